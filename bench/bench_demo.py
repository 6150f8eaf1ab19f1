"""The demo's bottom line, per training variant: SMART's score on each dev task against the backbone with the same
top-3 passages (vanilla RAG) and without retrieval, both measured in the same quickstart run, plus each agent's
fallback rate, the Fact Locator's hit rate on the gold passage, and the time the two training stages took.

Each variant is one quickstart run (`scripts/quickstart.py`, cached per stage: an existing run folder is reused):
  special   the paper's nine trajectory tokens added to the vocabulary (USE_SPECIAL_TOKENS=1)
  plain     the same markers left as plain text, split into sub-word pieces (USE_SPECIAL_TOKENS=0, the default)

    python bench/bench_demo.py                               # both variants at the quickstart's default sizes
    QUICK=1 python bench/bench_demo.py --variants special    # any quickstart setting passes through the environment
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from smart.evaluation.report import agent_diagnostics, load_evaluations, stage_times
from smart.inference.agents import FALLBACKS

VARIANTS = {"special": {"USE_SPECIAL_TOKENS": "1"}, "plain": {"USE_SPECIAL_TOKENS": "0"}}
REPO = Path(__file__).resolve().parents[1]


def run_variant(run_dir: Path, overrides: dict[str, str]) -> None:
    env = {**os.environ, **overrides, "RUN_DIR": str(run_dir)}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "quickstart.py")], cwd=REPO, env=env)
    if result.returncode != 0:
        sys.exit(f"quickstart for {run_dir} failed (exit {result.returncode}); rerun to resume it")


def summarize(name: str, run_dir: Path) -> list[str]:
    """Table rows of one variant: a row per dev task and one for the average."""
    evaluations = load_evaluations(run_dir)
    scores = {(e.task, e.method): e.metrics["score"] for e in evaluations}
    smart = [e for e in evaluations if e.method == "smart"]
    seconds = dict(stage_times(run_dir))
    rows = []
    for e in smart:
        d = agent_diagnostics("smart", e.rows)
        ours, rag, bare = (scores[e.task, m] for m in ("smart", "vanilla_rag", "no_retrieval"))
        falls = " / ".join(f"{d[f'{agent} fallback'].pct:.0f}" for agent in FALLBACKS)
        rows.append(f"| {name} | {e.task} | {ours:.1f} | {rag:.1f} | {ours - rag:+.1f} | {bare:.1f} | {falls} | "
                    f"{d['locator hit on gold'].cell()} | |")
    avg = {m: sum(scores[e.task, m] for e in smart) / len(smart) for m in ("smart", "vanilla_rag", "no_retrieval")}
    rows.append(f"| {name} | average | {avg['smart']:.1f} | {avg['vanilla_rag']:.1f} | "
                f"{avg['smart'] - avg['vanilla_rag']:+.1f} | {avg['no_retrieval']:.1f} | | | "
                f"{seconds.get('stage1', 0) + seconds.get('stage2', 0):.0f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--run_root", default="runs/bench_demo", help="one quickstart RUN_DIR per variant under it")
    args = p.parse_args()
    root = REPO / args.run_root
    for name in args.variants:
        run_variant(root / name, VARIANTS[name])
    print("\nSMART vs the backbone on the same passages, same run; fallbacks in % of dev items "
          f"({' / '.join(FALLBACKS)}); SMART - RAG in points\n")
    print("| variant | task | SMART | vanilla RAG | SMART - RAG | no retrieval | fallbacks % | locator hit on gold | "
          "training s |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|")
    for name in args.variants:
        print("\n".join(summarize(name, root / name)))


if __name__ == "__main__":
    main()
