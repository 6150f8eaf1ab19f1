"""SMART and its backbone on questions written by hand over the embedded corpus (eval/handwritten/: PopQA-,
PubHealth- and ARC-style, 30 each, in the paper's file shapes), a check beyond the demo's question templates.

    bash scripts/eval_handwritten.sh     # after the quickstart: same RUN_DIR and sizes, its finished stages reused

Retrieves the top-3 passages for each question (static, as for the dev sets), evaluates the quickstart's SMART,
the backbone alone and the backbone with those passages, and writes <RUN_DIR>/handwritten/results_table.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from smart import defaults, pipeline
from smart.evaluation.report import load_evaluations, results_table
from smart.io import atomic_write, exit_on_input_error


def main() -> None:
    run = Path(os.environ.get("RUN_DIR", "runs/quickstart"))
    with exit_on_input_error():
        setup = pipeline.demo_setup(run, defaults.data_dir())
        seconds = pipeline.run_stages(pipeline.handwritten_stages(setup), run)
    table = results_table(load_evaluations(run / "handwritten"))
    out = run / "handwritten" / "results_table.md"
    with atomic_write(out) as f:
        f.write(table)
    print(f"\nhand-written questions: all stages done ({seconds:.0f} s this run)\n\n{table}\nwrote {out}")


if __name__ == "__main__":
    main()
