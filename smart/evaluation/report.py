"""The quickstart's report: the results table, per-agent diagnostics, stage timings, training curves, trajectories.

Reads what the stages left in a run folder (stages/*.json, stage*/training_log.jsonl, eval/*.metrics.json and the
predictions JSONL beside each) and writes report.md, results_table.md (strict protocol), results_table_paper.md
(paper protocol, smart.evaluation.protocols), diagnostics.json and two PNG plots. Evaluations are grouped by the `task` and
`method` fields of their metrics, not by file names.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from smart.evaluation import protocols
from smart.evaluation.metrics import compared_verdict, parse_true_false
from smart.evaluation.paper import Difference, our_titles, scored_rows
from smart.evaluation.stats import (RESAMPLES, bootstrap_ci, differences, pair_by_id, paired_bootstrap_ci,
                         stratified_bootstrap_ci)
from smart.evaluation.tasks import TASKS
from smart.evaluation.viewer import report_pages
from smart.inference.agents import FALLBACKS, METHODS
from smart.io import atomic_write, iter_jsonl, write_json

TRAINING_LOG = "training_log.jsonl"
METHOD_NAMES = our_titles("table2")  # the quickstart's table names its rows as Table 2 does
AGENT_METHODS = ("smart", "modular")  # their rows come from the agents: well-formedness, facts and fallbacks apply
CITING_METHODS = ("smart",)  # their generator cites passages
MISSING = "–"
PAIR = ("smart", "vanilla_rag")  # the paired comparison: SMART against the backbone with the same passages
AVERAGE = "average"


@dataclass(frozen=True)
class Ratio:
    """`hits` out of `total` (no percentage when `total` is 0)."""

    hits: int
    total: int

    @property
    def pct(self) -> float | None:
        return 100 * self.hits / self.total if self.total else None

    def cell(self) -> str:
        return MISSING if self.pct is None else f"{self.pct:.1f} ({self.hits}/{self.total})"

    def to_json(self) -> dict:
        return {"hits": self.hits, "total": self.total, "pct": self.pct}


@dataclass
class Evaluation:
    """One metrics JSON (one method on one task) and its prediction rows."""

    task: str
    method: str
    metrics: dict
    rows: list[dict]


def stage_times(run: Path) -> list[tuple[str, float]]:
    """(stage, seconds) in the order the stages finished."""
    rows = []
    for path in sorted((run / "stages").glob("*.json"), key=lambda p: p.stat().st_mtime):
        rows.append((path.stem, json.loads(path.read_text())["seconds"]))
    return rows


def training_curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Per training stage, (step, loss) from its first training log."""
    curves = {}
    for stage in ("stage1", "stage2"):
        logs = sorted((run / stage).rglob(TRAINING_LOG))
        if logs:
            curves[stage] = [(row["step"], row["loss"]) for _, row in iter_jsonl(logs[0], tolerate_truncated_tail=True)]
    return curves


def _order(names: set[str], known: list[str]) -> list[str]:
    """`names` in the order of `known`, unknown names after them (alphabetically)."""
    return [n for n in known if n in names] + sorted(names - set(known))


def load_evaluations(run: Path) -> list[Evaluation]:
    """Every eval/*.metrics.json with the predictions beside it, sorted by method then task.

    Two metrics files for the same task and method are an error (the table would have to drop one).
    """
    found: dict[tuple[str, str], tuple[Path, Evaluation]] = {}
    for path in sorted((run / "eval").glob("*.metrics.json")):
        metrics = json.loads(path.read_text())
        predictions = path.with_name(path.name.removesuffix(".metrics.json") + ".jsonl")
        rows = [row for _, row in iter_jsonl(predictions, tolerate_truncated_tail=True)] if predictions.exists() else []
        key = (metrics["task"], metrics["method"])
        if key in found:
            raise ValueError(f"{found[key][0]} and {path} both hold task {key[0]}, method {key[1]}")
        found[key] = path, Evaluation(key[0], key[1], metrics, rows)
    tasks = _order({t for t, _ in found}, list(TASKS))
    methods = _order({m for _, m in found}, list(METHODS))
    return [found[t, m][1] for m in methods for t in tasks if (t, m) in found]


def task_header(task: str, protocol: str = "strict") -> str:
    """Column title of a task: its title and metric under `protocol`, e.g. "PubHealth (accuracy)"."""
    known = TASKS.get(task)
    return f"{known.title} ({protocols.metric_name(task, protocol)})" if known else task


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _percent(ci: tuple[float, float]) -> tuple[float, float]:
    return 100 * ci[0], 100 * ci[1]


def score_ci(rows: list[dict], protocol: str = "strict") -> tuple[float, float] | None:
    """Bootstrap 95% CI (%) of the mean of the rows' scores under `protocol`; None without them."""
    scores = protocols.row_scores(rows, protocol)
    return _percent(bootstrap_ci(scores)) if scores else None


def _cell(e: Evaluation, protocol: str) -> str:
    """The evaluation's score cell under `protocol`: the CI from its rows, else from its metrics."""
    numbers = protocols.numbers(e.metrics, protocol)
    if numbers is None:
        return MISSING
    return protocols.cell(numbers["score"], score_ci(e.rows, protocol) or numbers.get("ci95"), numbers.get("n"))


def results_table(evaluations: list[Evaluation], protocol: str = "strict") -> str:
    """Markdown "Table 2" under `protocol`: a row per method, a column per task, their average and all fallbacks;
    each score cell `score [95% CI] (n=items)` (the average's CI resamples each task's items on their own and
    averages the task means).

    The average is over every task of the table; a method missing a task (or its numbers under `protocol`) has none.
    """
    tasks = list(dict.fromkeys(e.task for e in evaluations))
    methods = list(dict.fromkeys(e.method for e in evaluations))
    cells = {(e.task, e.method): e for e in evaluations}
    lines = [_row(["Method"] + [task_header(t, protocol) for t in tasks] + ["Average", "fallbacks"]),
             "|---|" + "---:|" * (len(tasks) + 2)]
    for method in methods:
        done = [cells[t, method] for t in tasks if (t, method) in cells]
        fallbacks = sum(sum((e.metrics.get("fallbacks") or {}).values()) for e in done)
        numbers = [protocols.numbers(e.metrics, protocol) for e in done]
        average = MISSING
        if len(done) == len(tasks) and all(numbers):
            groups = [protocols.row_scores(e.rows, protocol) for e in done]
            ci = _percent(stratified_bootstrap_ci(groups)) if all(groups) else None
            average = protocols.cell(sum(x["score"] for x in numbers) / len(done), ci, sum(x["n"] for x in numbers))
        lines.append(_row([METHOD_NAMES.get(method, method)]
                          + [_cell(cells[t, method], protocol) if (t, method) in cells else MISSING for t in tasks]
                          + [average, str(fallbacks)]))
    return "\n".join(lines) + "\n"


class Paired(Difference):
    """SMART's (`row`) and vanilla RAG's (`reference`) mean scores (%) on the items both answered, and the 95% CI of
    their difference; `task` may be AVERAGE, the mean over the tasks."""

    @property
    def reading(self) -> str:
        """"SMART ahead" / "SMART behind" when the CI excludes zero, else "within noise"."""
        return "SMART ahead" if self.ci[0] > 0 else "SMART behind" if self.ci[1] < 0 else "within noise"

    def to_json(self) -> dict:
        return {"task": self.task, "n": self.n, PAIR[0]: self.row, PAIR[1]: self.reference,
                "difference": self.difference, "ci95": list(self.ci), "reading": self.reading}


def paired(evaluations: list[Evaluation], protocol: str = "strict") -> list[Paired]:
    """SMART minus vanilla RAG (scores under `protocol`) per task both ran, on the items (`id`) both answered, with
    a paired bootstrap CI; then, for several tasks, the average over them, whose CI resamples each task's items on
    their own and averages the task differences. Empty without a task both ran with per-item scores."""
    rows = {(e.task, e.method): scored_rows(e.rows, protocol) for e in evaluations}
    out, groups = [], []
    for task in dict.fromkeys(e.task for e in evaluations):
        if not rows.get((task, PAIR[0])) or not rows.get((task, PAIR[1])):
            continue
        a, b = pair_by_id(rows[task, PAIR[0]], rows[task, PAIR[1]])
        if a:
            out.append(Paired(task, len(a), 100 * sum(a) / len(a), 100 * sum(b) / len(b),
                              _percent(paired_bootstrap_ci(a, b))))
            groups.append(differences(a, b))
    if len(out) > 1:
        out.append(Paired(AVERAGE, sum(p.n for p in out), sum(p.row for p in out) / len(out),
                          sum(p.reference for p in out) / len(out), _percent(stratified_bootstrap_ci(groups))))
    return out


def paired_table(rows: list[Paired], protocol: str = "strict") -> str:
    """Markdown "SMART − vanilla RAG (paired)" under `protocol`: a row per task and the average, the difference in
    points with its 95% CI and what the CI says."""
    words = {"SMART ahead": "the 95% CI lies above zero", "SMART behind": "the 95% CI lies below zero",
             "within noise": "the 95% CI includes zero"}
    lines = [_row(["Task", "n", "SMART %", "vanilla RAG %", "SMART − vanilla RAG [95% CI]", "reading"]),
             "|---|---:|---:|---:|---:|---|"]
    for p in rows:
        lines.append(_row(["Average over tasks" if p.task == AVERAGE else task_header(p.task, protocol), str(p.n),
                           f"{p.row:.1f}", f"{p.reference:.1f}",
                           f"{p.difference:+.1f} [{p.ci[0]:.1f}, {p.ci[1]:.1f}]",
                           f"{p.reading}: {words[p.reading]}"]))
    return "\n".join(lines) + "\n"


def _broken(row: dict, agent: str) -> bool:
    """The agent's output had a problem or the system took its fallback."""
    return agent in row["fallbacks"] or any(p.startswith(agent + ":") for p in row["problems"])


def agent_diagnostics(method: str, rows: list[dict]) -> dict[str, Ratio | None]:
    """Per-agent measures of one evaluation; None where a measure does not apply to the method.

    - `<agent> well-formed`: rows whose agent output had no problem and took no fallback (locator: among the
      rows with passages).
    - `locator hit on gold`: rows with a gold passage (`gold_passages`, 1-based) where the locator marked at
      least one of them relevant.
    - `citation precision`: citations pointing to a gold passage, among all citations of rows whose task knows
      gold passages; `cites a gold passage`: rows with a gold passage citing one.
    - `verdict word follows comparison`: claim answers that compare the claim's span with the fact's
      (`compared_verdict`) whose written verdict (`parse_true_false`, which scoring reads) says the same.
    - `<agent> fallback`: rows that took the agent's fallback.
    """
    agents, citing = method in AGENT_METHODS, method in CITING_METHODS
    out: dict[str, Ratio | None] = {}
    for agent in FALLBACKS:
        scope = [r for r in rows if r["passages"]] if agent == "locator" else rows
        out[f"{agent} well-formed"] = Ratio(sum(not _broken(r, agent) for r in scope), len(scope)) if agents else None
    with_gold = [r for r in rows if r.get("gold_passages")]
    hits = sum(any(f["relevant"] and f["index"] in r["gold_passages"] for f in r["facts"]) for r in with_gold)
    out["locator hit on gold"] = Ratio(hits, len(with_gold)) if agents else None
    judged = [c in r["gold_passages"] for r in rows if r.get("gold_passages") is not None for c in r["citations"]]
    out["citation precision"] = Ratio(sum(judged), len(judged)) if citing else None
    citing_gold = sum(any(c in r["gold_passages"] for c in r["citations"]) for r in with_gold)
    out["cites a gold passage"] = Ratio(citing_gold, len(with_gold)) if citing else None
    compared = [(compared_verdict(r["answer"]), parse_true_false(r["answer"])) for r in rows]
    compared = [(c, w) for c, w in compared if c is not None]
    out["verdict word follows comparison"] = Ratio(sum(c == w for c, w in compared), len(compared)) if citing else None
    for agent in FALLBACKS:
        out[f"{agent} fallback"] = Ratio(sum(agent in r["fallbacks"] for r in rows), len(rows)) if agents else None
    return out


def diagnostics(evaluations: list[Evaluation]) -> dict:
    """`evaluations`: per evaluation task, method, n, score (%) and its 95% CI (`ci95`, None without rows), the
    same under the paper protocol (`paper_score`, `paper_ci95`; None where not computed) and `agent_diagnostics`
    (ratios as JSON, None where not applicable); `smart_vs_vanilla_rag` and `smart_vs_vanilla_rag_paper`: `paired`
    under each protocol; `label_recall`: per accuracy-task evaluation, [right, items] per gold label and their mean."""
    out = []
    for e in evaluations:
        measures = agent_diagnostics(e.method, e.rows)
        ci, paper_ci = score_ci(e.rows), score_ci(e.rows, "paper")
        paper_numbers = protocols.numbers(e.metrics, "paper") or {}
        out.append({"task": e.task, "method": e.method, "n": len(e.rows), "score": e.metrics["score"],
                    "ci95": list(ci) if ci else None, "paper_score": paper_numbers.get("score"),
                    "paper_ci95": list(paper_ci) if paper_ci else paper_numbers.get("ci95"),
                    **{k: v.to_json() if v else None for k, v in measures.items()}})
    return {"evaluations": out, "smart_vs_vanilla_rag": [p.to_json() for p in paired(evaluations)],
            "smart_vs_vanilla_rag_paper": [p.to_json() for p in paired(evaluations, "paper")],
            "label_recall": [{"task": e.task, "method": e.method, "mean": mean,
                              "right_of_items": {label: list(pair) for label, pair in counts.items()}}
                             for e, counts, mean in label_recall(evaluations)]}


def diagnostics_table(evaluations: list[Evaluation]) -> str:
    """Markdown "Agent diagnostics": a row per method and task, each measure as `% (hits/total)`."""
    measures = [agent_diagnostics(e.method, e.rows) for e in evaluations]
    names = list(measures[0]) if measures else []
    lines = [_row(["Method", "Task", "n"] + [f"{name} %" for name in names]), "|---|---|" + "---:|" * (len(names) + 1)]
    for e, m in zip(evaluations, measures):
        lines.append(_row([METHOD_NAMES.get(e.method, e.method), task_header(e.task), str(len(e.rows))]
                          + [m[name].cell() if m[name] else MISSING for name in names]))
    return "\n".join(lines) + "\n"


def plot(run: Path, curves: dict[str, list[tuple[int, float]]], evaluations: list[Evaluation]) -> list[str]:
    """training_loss.png (loss per training stage) and metrics.png (grouped bars: tasks x methods)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
        for ax, (stage, points) in zip(axes[0], curves.items()):
            ax.plot([s for s, _ in points], [loss for _, loss in points], marker=".")
            ax.set(title=f"{stage}: {'short' if stage == 'stage1' else 'long'} trajectories", xlabel="optimizer step",
                   ylabel="loss on supervised tokens")
        fig.tight_layout()
        fig.savefig(run / "training_loss.png", dpi=100)
        plt.close(fig)
        written.append("training_loss.png")
    if evaluations:
        tasks = list(dict.fromkeys(e.task for e in evaluations))
        methods = list(dict.fromkeys(e.method for e in evaluations))
        width = 0.8 / len(methods)
        fig, ax = plt.subplots(figsize=(5 + 2 * len(tasks), 3.8))
        for i, method in enumerate(methods):
            points = [(tasks.index(e.task), e.metrics["score"]) for e in evaluations if e.method == method]
            ax.bar([x + (i - (len(methods) - 1) / 2) * width for x, _ in points], [s for _, s in points], width,
                   label=METHOD_NAMES.get(method, method))
        ax.set_xticks(range(len(tasks)), [task_header(t) for t in tasks])
        ax.set(ylabel="score (%)", ylim=(0, 100), title="demo dev split")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
        fig.tight_layout()
        fig.savefig(run / "metrics.png", dpi=100)
        plt.close(fig)
        written.append("metrics.png")
    return written


def examples(evaluations: list[Evaluation], correct: int = 2, wrong: int = 1) -> list[tuple[str, dict]]:
    """(task, row) of SMART predictions: per task up to `correct` scored rows (cited first) and `wrong` unscored."""
    picked = []
    for e in evaluations:
        if e.method == "smart":
            right = sorted((r for r in e.rows if r.get("score")), key=lambda r: not r["citations"])
            picked += [(e.task, r) for r in right[:correct] + [r for r in e.rows if not r.get("score")][:wrong]]
    return picked


def constant_answers(evaluations: list[Evaluation]) -> dict[str, tuple[str, float]]:
    """Per accuracy task (gold labels: PubHealth, ARC-C): its most common gold label and the score (%) of answering
    it for every item, the floor a method must clear to have learnt more than the label prior."""
    out = {}
    for e in evaluations:
        if e.task not in out and e.rows and "label" in e.rows[0]:
            labels = Counter(r["golds"][0] for r in e.rows)
            label, count = labels.most_common(1)[0]
            out[e.task] = (label, 100 * count / len(e.rows))
    return out


def label_recall(evaluations: list[Evaluation]) -> list[tuple[Evaluation, dict[str, tuple[int, int]], float]]:
    """Per evaluation of an accuracy task (gold labels): (evaluation, {gold label: (right, items)}, the mean over the
    labels of the share right, %): what the method would score on a set balanced by label, where answering one
    label for every item scores 100 / number of labels."""
    out = []
    for e in evaluations:
        if e.rows and "label" in e.rows[0]:
            items = Counter(r["golds"][0] for r in e.rows)
            right = Counter(r["golds"][0] for r in e.rows if (r.get("score") or 0) > 0)
            counts = {label: (right[label], items[label]) for label in sorted(items)}
            out.append((e, counts, 100 * sum(r / n for r, n in counts.values()) / len(counts)))
    return out


def label_recall_table(evaluations: list[Evaluation]) -> list[str]:
    """Markdown lines of `label_recall`, a row per method and accuracy task; [] when there is none."""
    rows = label_recall(evaluations)
    if not rows:
        return []
    out = ["Right per gold label (right/items) and their mean over the labels: the score on a set balanced by label, "
           "where one label answered everywhere scores 100 / number of labels. Also in diagnostics.json.", "",
           "| Method | Task | per gold label | mean over labels % |", "|---|---|---|---:|"]
    out += [_row([METHOD_NAMES.get(e.method, e.method), task_header(e.task),
                  ", ".join(f"`{label}` {r}/{n}" for label, (r, n) in counts.items()), f"{mean:.1f}"])
            for e, counts, mean in rows]
    return out + [""]


def contamination_section(run: Path) -> list[str]:
    """The train/dev overlap table from contamination.json (eval/check_contamination.py), when the run has it."""
    path = run / "contamination.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    n, train = data["ngram"], data["train"]
    out = ["## Train/dev overlap", "", f"Dev items sharing with the training trajectories ({train['records']} records, "
           f"{train['questions']} distinct questions) the same normalized question, a source id, or a {n}-gram of "
           "question words (eval/check_contamination.py; also in contamination.json).", "",
           f"| task | items | same question | same id | shared {n}-gram | any |", "|---|---:|---:|---:|---:|---:|"]
    out += [f"| {task_header(e['task'])} | {e['n']} | {e['same_question']} | {e['same_id']} | {e['ngram']} | {e['any']} |"
            for e in data["eval"]]
    for e in data["eval"]:
        out += [f"- {task_header(e['task'])}: dev `{x['eval_question']}` ~ train `{x['train_question']}` "
                f"({', '.join(x['kinds'])})" for x in e["examples"]]
    return out + [""]


def write_report(run: Path, settings: dict[str, str]) -> Path:
    """Write report.md, results_table.md, diagnostics.json and the plots into `run`; return report.md's path."""
    run = Path(run)
    times, curves, evaluations = stage_times(run), training_curves(run), load_evaluations(run)
    table, paper_table = results_table(evaluations), results_table(evaluations, "paper")
    for name, text in (("results_table.md", table), ("results_table_paper.md", paper_table)):
        with atomic_write(run / name) as f:
            f.write(text)
    write_json(run / "diagnostics.json", diagnostics(evaluations))
    images = plot(run, curves, evaluations)
    out = ["# SMART quickstart report", "", "## Results (Table 2)", "",
           f"Score % [bootstrap 95% CI, {RESAMPLES:,} resamples of the items] (n=items); the average's CI resamples "
           "each task's items on their own. Two rulers (smart/evaluation/protocols.py): the strict protocol (ours, the "
           "headline: normalized match on word boundaries; for claims and choices the label the answer states) and "
           "the paper protocol (the scoring the paper used: Self-RAG's raw, case-sensitive substring match, also on "
           "PubHealth's true/false and ARC's answer letter; ALCE's for ASQA).", "",
           f"### {protocols.TITLES['strict']}", "", table,
           f"### {protocols.TITLES['paper']}", "", paper_table]
    if constants := constant_answers(evaluations):
        out += ["Answering the most common gold label for every item would score: " + "; ".join(
            f"{task_header(t)} `{label}` {share:.1f}" for t, (label, share) in constants.items()) + ".", ""]
    out += label_recall_table(evaluations)
    out += [f"![{name}]({name})" for name in images] + [""]
    pairs = {protocol: paired(evaluations, protocol) for protocol in protocols.PROTOCOLS}
    if any(pairs.values()):
        out += ["## SMART − vanilla RAG (paired)", "", "SMART's score minus vanilla RAG's, in points, on the items "
                "both answered (matched by id), with a paired bootstrap 95% CI (the items resampled jointly; the "
                "average over tasks resamples each task's items on their own and averages the task differences), "
                "under each protocol. Also in diagnostics.json.", ""]
        for protocol, rows in pairs.items():
            if rows:
                out += [f"### {protocols.TITLES[protocol]}", "", paired_table(rows, protocol)]
    out += ["## Agent diagnostics", "", "Percent (hits/total); – where a measure does not apply. Gold passages: the "
            "item's passages holding a gold answer. Also in diagnostics.json.", "", diagnostics_table(evaluations)]
    out += contamination_section(run)
    out += report_pages(run)
    out += ["## Settings", "", "| setting | value |", "|---|---|"]
    out += [f"| {k} | `{v}` |" for k, v in settings.items()] + [""]
    total = sum(sec for _, sec in times)
    out += ["## Time per stage", "", "| stage | seconds | share of the run |", "|---|---:|---:|"]
    out += [f"| {name} | {sec:.0f} | {100 * sec / total:.0f}% |" for name, sec in times if total]
    out += [f"| total | {total:.0f} | |", ""]
    for stage, points in curves.items():
        if points:
            out.append(f"- {stage}: loss {points[0][1]:.3f} at step {points[0][0]} -> {points[-1][1]:.3f} at step {points[-1][0]}")
    out += ["", "## Example SMART trajectories", ""]
    for task, row in examples(evaluations):
        out += [f"**{task_header(task)} Q:** {row['question']}  ",
                f"**gold:** {row.get('golds')} **score:** {row.get('score')} "
                f"**citations:** {row.get('citations')} **gold passages:** {row.get('gold_passages')}", "", "```",
                row["trajectory"].strip(), "```", ""]
    with atomic_write(run / "report.md") as f:
        f.write("\n".join(out) + "\n")
    return run / "report.md"
