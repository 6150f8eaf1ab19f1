"""The paper's published numbers (Tables 2-4, Llama-2-7B backbone) and its three tables rendered with ours beside
them, each cell `ours / published (ours - published)`, ours under either scoring protocol (smart.evaluation.protocols:
the paper protocol scores as the paper did, so its cells compare like with like); and the results table in the
paper's layout (paper_table).

Two versions of the paper: "aaai" (AAAI 2025, arXiv v3; the default) and "preprint" (the earlier arXiv version,
which reports only SMART's four short-form scores of Table 2). Columns are (task, metric) keys of the metrics JSON
that eval/run_eval.py writes per run (metrics.aggregate: every number there is a percentage, as in the paper).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from smart.evaluation import protocols
from smart.evaluation.tasks import TASKS

Column = tuple[str, str]  # (task, metric); metric "score" is the task's main metric (accuracy or match)
Numbers = tuple[float | None, ...]  # one per column of the table

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


def cell(ours: float | None, paper: float | None) -> str:
    """`ours / published (ours - published)`; a missing side is "–" and has no difference."""
    text = f"{MISSING if ours is None else f'{ours:.1f}'} / {MISSING if paper is None else f'{paper:.2f}'}"
    return text if ours is None or paper is None else f"{text} ({ours - paper:+.1f})"


def _measured(spec: Table, ours: dict[str, dict[str, dict]], protocol: str) -> dict[tuple[str, Column], float]:
    """(row, column) -> our number under `protocol`, from each row's metrics JSON per task."""
    values = {}
    for row, by_task in ours.items():
        for task, metrics in by_task.items():
            if metrics.get("task", task) != task:
                raise ValueError(f"ours[{row!r}][{task!r}] holds the metrics of task {metrics['task']!r}")
            for column in spec.columns:
                value = protocols.value(metrics, column[1], protocol) if column[0] == task else None
                if value is not None:
                    values[row, column] = float(value)
    return values


def _fallbacks(by_task: dict[str, dict] | None) -> str:
    return MISSING if by_task is None else str(sum(sum((m.get("fallbacks") or {}).values()) for m in by_task.values()))


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_table(table: str, ours: dict[str, dict[str, dict]], version: str = DEFAULT_VERSION,
                 settings: dict[str, str] | None = None, row_titles: dict[str, str] | None = None,
                 all_columns: bool = False, protocol: str = "strict") -> str:
    """Markdown of a paper table in the paper's layout (its rows in its order, its columns), each cell
    `ours / published (ours - published)`, ours scored under `protocol` (named in the title).

    `ours`: row key -> task -> that run's metrics JSON. Columns where no row has a number of ours are left out
    unless `all_columns`. A last column counts our fallbacks when any run had one. `row_titles` override our
    counterparts' titles; `settings` (model, data, ...) are listed below the table.
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
    lines = [f"**{spec.title}** — {protocols.TITLES[protocol]}: ours / published (ours - published)", "",
             _line(header), "|---|---|" + "---:|" * (len(header) - 2)]
    group = ""
    for row in spec.rows:
        if row.group != group:
            group = row.group
            lines.append(_line([f"*{group}*"] + [""] * (len(header) - 1)))
        paper = published_row(table, row.key, version)
        lines.append(_line([row.paper, titles.get(row.key, MISSING)]
                           + [cell(measured.get((row.key, c)), paper[c]) for c in columns]
                           + [_fallbacks(ours.get(row.key))] * with_fallbacks))
    lines += ["", f"published: {VERSIONS[version]}, {BACKBONE}"]
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
