"""The paper's published numbers (Tables 2-4, Llama-2-7B backbone) and its three tables rendered with ours beside
them, each cell `ours [95% CI] (n=items) / published (ours - published)`, ours under either scoring protocol
(smart.evaluation.protocols: the paper protocol scores as the paper did, so its cells compare like with like), with
a paired block below each table (the comparisons the table makes, per task, with paired bootstrap 95% CIs); and the
results table in the paper's layout (paper_table).

Two versions of the paper: "aaai" (AAAI 2025, arXiv v3; the default) and "preprint" (the earlier arXiv version,
which reports only SMART's four short-form scores of Table 2). Columns are (task, metric) keys of the metrics JSON
that eval/run_eval.py writes per run (metrics.aggregate: every number there is a percentage, as in the paper).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from smart.evaluation import protocols
from smart.evaluation.stats import pair_by_id, paired_bootstrap_ci
from smart.evaluation.tasks import TASKS

Column = tuple[str, str]  # (task, metric); metric "score" is the task's main metric (accuracy or match)
Numbers = tuple[float | None, ...]  # one per column of the table
Predictions = dict[str, dict[str, list[dict]]]  # row -> task -> that run's prediction rows (`id`, `score`, `paper_score`)

DEFAULT_VERSION = "aaai"
VERSIONS = {"aaai": "AAAI 2025 (arXiv v3)", "preprint": "earlier arXiv preprint"}
BACKBONE = "Llama-2-7B"
MISSING = "–"
METRIC_TITLES = {"str_em": "str-em", "rouge_l": "ROUGE-L", "mauve": "MAUVE"}  # "score": the task's metric


@dataclass(frozen=True)
class Row:
    """A row of a paper table: its key, the paper's title, our counterpart's title (None: we have none)."""

    key: str
    paper: str
    ours: str | None
    group: str = ""  # the sub-header the row sits under (Table 3's two halves)


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


TRAINING_ABLATION = "Training ablation (long-trajectory learning only, 60k samples)"
INFERENCE_ABLATION = "Inference ablation (full model, agents skipped at inference)"
_AGENT_ABLATIONS = (("full", "Full", "all agents"), ("no_locator", "w/o Fact Locator", "without the Fact Locator"),
                    ("no_intent", "w/o Intent Reconstructor", "without the Intent Reconstructor"),
                    ("generator_only", "Generator only", "generator only"))

TABLES: dict[str, Table] = {t.key: t for t in (
    Table("table2", "Table 2: main results",
          (("pubhealth", "score"), ("arc_c", "score"), ("popqa", "score"), ("squad", "score"), ("asqa", "str_em"),
           ("asqa", "rouge_l"), ("asqa", "mauve")),
          (Row("smart", "SMART", "SMART (trained, 4 agents)"),
           Row("selfrag", "SelfRAG-7B", None),
           Row("modular", "MMAgent 3x7B (modular)", "Prompted modular agents (same backbone, no training)"),
           Row("vanilla_rag", "VANILLA-7B (retrieval)", "Backbone + the same top-3 passages (vanilla RAG)"),
           Row("no_retrieval", "Llama-2-Chat-7B", "Backbone alone (no retrieval)"),
           Row("chatgpt", "ChatGPT", None))),
    Table("table3", "Table 3: agent ablation",
          (("pubhealth", "score"), ("arc_c", "score"), ("popqa", "score"), ("asqa", "str_em")),
          tuple(Row(f"train_{key}", paper, f"Trained on long trajectories only ({ours})", TRAINING_ABLATION)
                for key, paper, ours in _AGENT_ABLATIONS)
          + tuple(Row(f"infer_{key}", paper, f"SMART at inference ({ours})", INFERENCE_ABLATION)
                  for key, paper, ours in _AGENT_ABLATIONS)),
    Table("table4", "Table 4: training stages",
          (("pubhealth", "score"), ("popqa", "score"), ("asqa", "str_em"), ("asqa", "rouge_l")),
          (Row("vanilla", "Llama-2-7B (vanilla)", "Backbone, untrained (+ the same top-3 passages, chat prompt)"),
           Row("short", "+ short-trajectory learning", "Stage 1 only (short trajectories)"),
           Row("long", "+ long-trajectory learning", "Stage 2 only (long trajectories)"),
           Row("short_long", "+ short & long (SMART)", "Stage 1 then stage 2 (SMART)"))),
)}

# table -> (row, reference row): the paired block below the table shows row - reference per task
COMPARISONS: dict[str, tuple[tuple[str, str], ...]] = {
    "table2": tuple(("smart", baseline) for baseline in ("modular", "vanilla_rag", "no_retrieval")),
    "table3": tuple((f"{half}_{key}", f"{half}_full") for half in ("train", "infer")
                    for key, *_ in _AGENT_ABLATIONS if key != "full"),
    "table4": tuple((row, "short_long") for row in ("vanilla", "short", "long")),
}

# version -> table -> row -> numbers in the table's column order, as printed in that version of the paper
PUBLISHED: dict[str, dict[str, dict[str, Numbers]]] = {
    "aaai": {
        "table2": {
            "smart": (73.18, 65.58, 42.60, 27.80, 41.16, 40.66, 91.47),
            "selfrag": (68.99, 65.52, 40.67, 22.39, 28.68, 34.11, 83.00),
            "modular": (70.82, 63.99, 36.88, 23.79, 33.04, 36.49, 88.98),
            "vanilla_rag": (29.52, 42.74, 37.52, 25.92, 32.25, 34.93, 39.54),
            "no_retrieval": (47.95, 47.95, 25.44, 14.13, 16.79, 32.35, 24.21),
            "chatgpt": (76.08, 77.3, 29.30, 22.90, 39.94, 35.73, 44.63),
        },
        "table3": {
            "train_full": (72.15, 60.22, 37.27, 36.10),
            "train_no_locator": (70.13, 58.95, 34.31, 34.77),
            "train_no_intent": (69.82, 54.94, 35.17, 34.41),
            "train_generator_only": (57.95, 56.99, 21.15, 20.05),
            "infer_full": (73.18, 65.58, 42.60, 41.16),
            "infer_no_locator": (71.63, 62.45, 37.45, 36.10),
            "infer_no_intent": (71.22, 60.11, 39.88, 35.30),
            "infer_generator_only": (69.32, 58.81, 16.79, 31.32),
        },
        "table4": {
            "vanilla": (9.80, 22.69, 14.11, 6.45),
            "short": (62.00, 32.23, 23.95, 19.91),
            "long": (72.9, 37.66, 39.86, 39.51),
            "short_long": (73.18, 42.60, 41.16, 40.66),
        },
    },
    "preprint": {"table2": {"smart": (75.99, 72.81, 47.66, 33.05, None, None, None)}},
}


def get_table(table: str) -> Table:
    if table not in TABLES:
        raise ValueError(f"unknown paper table '{table}' (choose from {', '.join(TABLES)})")
    return TABLES[table]


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown paper version '{version}' (choose from {', '.join(VERSIONS)})")


def _check_rows(spec: Table, keys: Iterable[str], what: str) -> None:
    unknown = set(keys) - {row.key for row in spec.rows}
    if unknown:
        raise ValueError(f"{what}: unknown {spec.key} row(s) {', '.join(sorted(unknown))} "
                         f"(choose from {', '.join(row.key for row in spec.rows)})")


def published_row(table: str, row: str, version: str = DEFAULT_VERSION) -> dict[Column, float | None]:
    """Column -> the published number of one row (None where that version of the paper has none)."""
    spec = get_table(table)
    _check_version(version)
    _check_rows(spec, [row], "published")
    numbers = PUBLISHED[version].get(table, {}).get(row, (None,) * len(spec.columns))
    return dict(zip(spec.columns, numbers))


def published(table: str, row: str, task: str, metric: str, version: str = DEFAULT_VERSION) -> float | None:
    """One published number; None where the paper has none (a version or a table without that column).

    ASQA's "score" is its str-em (metrics.aggregate writes both)."""
    if (task, metric) == ("asqa", "score"):
        metric = "str_em"
    return published_row(table, row, version).get((task, metric))


def our_titles(table: str) -> dict[str, str]:
    """Row key -> the title of our counterpart, for the rows that have one."""
    return {row.key: row.ours for row in get_table(table).rows if row.ours}


def column_title(task: str, metric: str, protocol: str = "strict") -> str:
    """E.g. "PopQA (match)", "ASQA (ROUGE-L)", "PubHealth (accuracy)" (strict) or "PubHealth (match)" (paper)."""
    return f"{TASKS[task].title} ({METRIC_TITLES.get(metric, protocols.metric_name(task, protocol))})"


def ours_cell(score: float | None, ci: list[float] | tuple[float, float] | None = None, n: int | None = None) -> str:
    """Our number: `score [95% CI] (n=items)` where the CI is known, else the score alone ("–" without one)."""
    if score is None:
        return MISSING
    return protocols.cell(score, ci, n) if ci else f"{score:.1f}"


def cell(ours: float | None, paper: float | None, ci: list[float] | tuple[float, float] | None = None,
         n: int | None = None) -> str:
    """`ours [95% CI] (n=items) / published (ours - published)` (`ours_cell`); a missing side is "–" and has no
    difference."""
    text = f"{ours_cell(ours, ci, n)} / {MISSING if paper is None else f'{paper:.2f}'}"
    return text if ours is None or paper is None else f"{text} ({ours - paper:+.1f})"


def _with_ci(task: str, metric: str) -> bool:
    """The column holds the task's main score, whose CI and n the metrics JSON has (ASQA's: its str-em)."""
    return metric == "score" or (task, metric) == ("asqa", "str_em")


def _measured(spec: Table, ours: dict[str, dict[str, dict]], protocol: str) -> dict[tuple[str, Column], tuple]:
    """(row, column) -> (our number, its 95% CI, n) under `protocol`, from each row's metrics JSON per task; CI and n
    None where the metrics JSON has no CI for it (older runs; columns other than the main score)."""
    values = {}
    for row, by_task in ours.items():
        for task, metrics in by_task.items():
            if metrics.get("task", task) != task:
                raise ValueError(f"ours[{row!r}][{task!r}] holds the metrics of task {metrics['task']!r}")
            numbers = protocols.numbers(metrics, protocol) or {}
            for column in spec.columns:
                value = protocols.value(metrics, column[1], protocol) if column[0] == task else None
                if value is not None:
                    ci = numbers.get("ci95") if _with_ci(*column) else None
                    values[row, column] = (float(value), ci, numbers.get("n") if ci else None)
    return values


@dataclass(frozen=True)
class Difference:
    """A row's and its reference's mean scores (%) on the items both answered, and the paired bootstrap 95% CI of
    row - reference (points)."""

    task: str
    n: int
    row: float
    reference: float
    ci: tuple[float, float]

    @property
    def difference(self) -> float:
        return self.row - self.reference

    @property
    def reading(self) -> str:
        """Where the CI lies: "CI above zero", "CI below zero" or "CI spans zero" (a bound at zero spans it)."""
        return "CI above zero" if self.ci[0] > 0 else "CI below zero" if self.ci[1] < 0 else "CI spans zero"


def scored_rows(rows: list[dict], protocol: str = "strict") -> list[dict] | None:
    """`id` and `score` (the per-item score under `protocol`, protocols.row_scores) of prediction rows; None where
    protocols.row_scores has none."""
    scores = protocols.row_scores(rows, protocol)
    return None if scores is None else [{"id": r["id"], "score": x} for r, x in zip(rows, scores)]


def paired_difference(task: str, rows: list[dict], reference: list[dict], protocol: str = "strict") -> Difference | None:
    """`rows` minus `reference` (two runs' prediction rows on `task`, scores under `protocol`) on the items (`id`)
    both answered, with a paired bootstrap 95% CI (smart.evaluation.stats). None where either run has no per-item
    scores under `protocol` or they share no item."""
    a_rows, b_rows = scored_rows(rows, protocol), scored_rows(reference, protocol)
    if not a_rows or not b_rows:
        return None
    a, b = pair_by_id(a_rows, b_rows)
    if not a:
        return None
    low, high = paired_bootstrap_ci(a, b)
    return Difference(task, len(a), 100 * sum(a) / len(a), 100 * sum(b) / len(b), (100 * low, 100 * high))


def comparisons(table: str, predictions: Predictions, protocol: str = "strict") -> list[tuple[str, str, Difference]]:
    """(row, reference row, Difference) for each comparison the table makes (COMPARISONS) on each task both rows ran
    with per-item scores, in the table's task order (`paired_difference`)."""
    spec = get_table(table)
    _check_rows(spec, predictions, "predictions")
    tasks = list(dict.fromkeys(task for task, _ in spec.columns))
    out = []
    for row, reference in COMPARISONS[table]:
        for task in tasks:
            if task in predictions.get(row, {}) and task in predictions.get(reference, {}):
                pair = paired_difference(task, predictions[row][task], predictions[reference][task], protocol)
                if pair is not None:
                    out.append((row, reference, pair))
    return out


def paired_block(table: str, predictions: Predictions, protocol: str = "strict") -> str:
    """Markdown of the table's comparisons under `protocol` (`comparisons`): per comparison and task, n (the items
    both runs answered), both means, the difference in points with its paired bootstrap 95% CI and whether that CI
    lies above zero, below zero or spans it."""
    spec = get_table(table)
    names = {row.key: row for row in spec.rows}
    found = comparisons(table, predictions, protocol)
    lines = [f"**Paired** — {protocols.TITLES[protocol]}: row − reference, in points, on the items both answered "
             "(matched by id), with a paired bootstrap 95% CI", ""]
    if not found:
        return "\n".join(lines + ["no comparison has per-item scores on both sides yet"]) + "\n"
    lines += [_line(["Comparison", "Task", "n", "row %", "reference %", "row − reference [95% CI]", "reading"]),
              "|---|---|---:|---:|---:|---:|---|"]
    group = ""
    for row, reference, p in found:
        if names[row].group != group:
            group = names[row].group
            lines.append(_line([f"*{group}*"] + [""] * 6))
        lines.append(_line([f"{names[row].paper} − {names[reference].paper}", column_title(p.task, "score", protocol),
                            str(p.n), f"{p.row:.1f}", f"{p.reference:.1f}",
                            f"{p.difference:+.1f} [{p.ci[0]:.1f}, {p.ci[1]:.1f}]", p.reading]))
    return "\n".join(lines) + "\n"


def _fallbacks(by_task: dict[str, dict] | None) -> str:
    return MISSING if by_task is None else str(sum(sum((m.get("fallbacks") or {}).values()) for m in by_task.values()))


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_table(table: str, ours: dict[str, dict[str, dict]], version: str = DEFAULT_VERSION,
                 settings: dict[str, str] | None = None, row_titles: dict[str, str] | None = None,
                 all_columns: bool = False, protocol: str = "strict", predictions: Predictions | None = None) -> str:
    """Markdown of a paper table in the paper's layout (its rows in its order, its columns), each cell
    `ours [95% CI] (n=items) / published (ours - published)` (`cell`; the score alone where the metrics JSON has no
    CI), ours scored under `protocol` (named in the title).

    `ours`: row key -> task -> that run's metrics JSON. Columns where no row has a number of ours are left out
    unless `all_columns`. A last column counts our fallbacks when any run had one. `row_titles` override our
    counterparts' titles. `predictions` (row key -> task -> that run's prediction rows): the `paired_block` of the
    table's comparisons under `protocol` follows the table. `settings` (model, data, ...) are listed last.
    """
    spec = get_table(table)
    _check_version(version)
    _check_rows(spec, ours, "ours")
    _check_rows(spec, row_titles or {}, "row_titles")
    titles = {**our_titles(table), **(row_titles or {})}
    measured = _measured(spec, ours, protocol)
    columns = [c for c in spec.columns if all_columns or any((row.key, c) in measured for row in spec.rows)]
    with_fallbacks = any(m.get("fallbacks") for by_task in ours.values() for m in by_task.values())
    header = ["Paper", "Ours"] + [column_title(*c, protocol) for c in columns] + ["fallbacks (ours)"] * with_fallbacks
    lines = [f"**{spec.title}** — {protocols.TITLES[protocol]}: ours [95% CI] (n=items) / published "
             "(ours - published)", "",
             _line(header), "|---|---|" + "---:|" * (len(header) - 2)]
    group = ""
    for row in spec.rows:
        if row.group != group:
            group = row.group
            lines.append(_line([f"*{group}*"] + [""] * (len(header) - 1)))
        paper = published_row(table, row.key, version)
        cells = []
        for c in columns:
            score, ci, n = measured.get((row.key, c), (None, None, None))
            cells.append(cell(score, paper[c], ci, n))
        lines.append(_line([row.paper, titles.get(row.key, MISSING)] + cells
                           + [_fallbacks(ours.get(row.key))] * with_fallbacks))
    lines += ["", f"published: {VERSIONS[version]}, {BACKBONE}"]
    if predictions is not None:
        lines += ["", paired_block(table, predictions, protocol).rstrip("\n")]
    if settings:
        lines += [""] + [f"- {name}: {value}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def _paper_cell(run: dict, task: str, key: str, protocol: str) -> str:
    """A run's number in `paper_table`; the main score (ASQA's: str-em) as `score [95% CI] (n=items)`."""
    value = protocols.value(run, key, protocol)
    if value is None:
        return "-"
    if key != "score" and (task, key) != ("asqa", "str_em"):
        return f"{value:.1f}"
    numbers = protocols.numbers(run, protocol) or {}
    return protocols.cell(value, numbers.get("ci95"), numbers.get("n"))


def paper_table(runs: list[dict], version: str = DEFAULT_VERSION, protocol: str = "strict") -> str:
    """The paper's layout: one row per method and model, one column per dataset (ASQA: str-em and ROUGE-L), ours
    scored under `protocol` (smart.evaluation.protocols), with SMART's published numbers (Table 2, Llama-2-7B; `version` of the
    paper: VERSIONS) in the last row. `runs` are metrics JSON objects."""
    order = [t for t in TASKS if any(r["task"] == t for r in runs)]
    columns: list[tuple[str, str]] = []
    for t in order:
        columns += [(t, "str_em"), (t, "rouge_l")] if t == "asqa" else [(t, "score")]
    header = ["Method", "model"] + [column_title(t, k, protocol) for t, k in columns]
    titles = our_titles("table2")
    rows = []
    for method in dict.fromkeys(r["method"] for r in runs):
        for model in dict.fromkeys(r["model"] for r in runs if r["method"] == method):
            by_task = {r["task"]: r for r in runs if r["method"] == method and r["model"] == model}
            cells = [_paper_cell(by_task[t], t, k, protocol) if t in by_task else "-" for t, k in columns]
            rows.append([titles.get(method, method), Path(str(model)).name] + cells)
    smart_row = [published("table2", "smart", t, k, version) for t, k in columns]
    rows.append([f"SMART (published, {VERSIONS[version]})", BACKBONE]
                + ["-" if p is None else f"{p:.2f}" for p in smart_row])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
