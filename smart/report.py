"""The quickstart's report: stage timings, training curves, metrics per method, example trajectories.

Reads what the stages left in a run folder (stages/*.json, stage*/training_log.jsonl, eval/*.metrics.json,
eval/*.jsonl) and writes report.md, results_table.md and two PNG plots beside them.
"""
from __future__ import annotations

import json
from pathlib import Path

from smart.io import atomic_write, iter_jsonl
from smart.tasks import TASKS

TRAINING_LOG = "training_log.jsonl"
METHOD_NAMES = {"smart": "SMART (trained, 4 agents)", "no_retrieval": "Backbone, no retrieval",
                "vanilla_rag": "Backbone + top-3 passages (vanilla RAG)", "modular": "Prompted modular agents"}


def stage_times(run: Path) -> list[tuple[str, float]]:
    rows = []
    for path in sorted((run / "stages").glob("*.json"), key=lambda p: p.stat().st_mtime):
        rows.append((path.stem, json.loads(path.read_text())["seconds"]))
    return rows


def training_curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    curves = {}
    for stage in ("stage1", "stage2"):
        logs = sorted((run / stage).rglob(TRAINING_LOG))
        if logs:
            curves[stage] = [(row["step"], row["loss"]) for _, row in iter_jsonl(logs[0], tolerate_truncated_tail=True)]
    return curves


def eval_metrics(run: Path) -> list[dict]:
    rows = []
    for path in sorted((run / "eval").glob("*.metrics.json")):
        m = json.loads(path.read_text())
        m["name"] = path.name.removesuffix(".metrics.json")
        m["metric"] = TASKS[m["task"]].metric if m.get("task") in TASKS else ""
        rows.append(m)
    order = list(METHOD_NAMES)
    return sorted(rows, key=lambda m: order.index(m["name"]) if m["name"] in order else len(order))


def results_table(metrics: list[dict]) -> str:
    lines = ["| method | metric | score (%) | n | fallbacks |", "|---|---|---:|---:|---:|"]
    for m in metrics:
        fallbacks = sum(v for v in (m.get("fallbacks") or {}).values() if isinstance(v, (int, float)))
        lines.append(f"| {METHOD_NAMES.get(m['name'], m['name'])} | {m.get('metric', '')} | "
                     f"{m['score']:.2f} | {m['n']} | {fallbacks} |")
    return "\n".join(lines) + "\n"


def plot(run: Path, curves: dict[str, list[tuple[int, float]]], metrics: list[dict]) -> list[str]:
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
    if metrics:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar([m["name"] for m in metrics], [m["score"] for m in metrics], color="tab:blue")
        ax.set(ylabel=f"{metrics[0].get('metric', 'score')} (%)", title="demo dev split")
        fig.tight_layout()
        fig.savefig(run / "metrics.png", dpi=100)
        plt.close(fig)
        written.append("metrics.png")
    return written


def examples(run: Path, n: int = 5) -> list[dict]:
    path = run / "eval" / "smart.jsonl"
    if not path.exists():
        return []
    rows = [row for _, row in iter_jsonl(path, tolerate_truncated_tail=True)]
    cited = [r for r in rows if r.get("citations")]
    return (cited + [r for r in rows if not r.get("citations")])[:n]


def write_report(run: Path, settings: dict[str, str]) -> Path:
    run = Path(run)
    times, curves, metrics = stage_times(run), training_curves(run), eval_metrics(run)
    table = results_table(metrics)
    with atomic_write(run / "results_table.md") as f:
        f.write(table)
    images = plot(run, curves, metrics)
    out = ["# SMART quickstart report", "", "## Results", "", table]
    out += [f"![{name}]({name})" for name in images] + [""]
    out += ["## Settings", "", "| setting | value |", "|---|---|"]
    out += [f"| {k} | `{v}` |" for k, v in settings.items()] + [""]
    out += ["## Time per stage", "", "| stage | seconds |", "|---|---:|"]
    out += [f"| {name} | {sec:.0f} |" for name, sec in times] + [f"| total | {sum(s for _, s in times):.0f} |", ""]
    for stage, points in curves.items():
        if points:
            out.append(f"- {stage}: loss {points[0][1]:.3f} at step {points[0][0]} -> {points[-1][1]:.3f} at step {points[-1][0]}")
    out += ["", "## Example SMART trajectories", ""]
    for row in examples(run):
        out += [f"**Q:** {row['question']}  ",
                f"**gold:** {row.get('golds')} **score:** {row.get('score')} "
                f"**citations:** {row.get('citations')}", "", "```", row["trajectory"].strip(), "```", ""]
    with atomic_write(run / "report.md") as f:
        f.write("\n".join(out) + "\n")
    return run / "report.md"
