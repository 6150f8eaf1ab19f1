"""One of the paper's tables, end to end: run what its rows need (cached, shared with the quickstart), then print
it in the paper's layout with our number, the published one and the difference.

    python scripts/paper_tables.py table3                 # demo scale, on the embedded defaults (RUN_DIR)
    PAPER=1 MODEL=meta-llama/Llama-2-7b-hf TRAIN_SHORT=short.jsonl TRAIN_LONG=long.jsonl EVAL_DIR=eval_data \
        python scripts/paper_tables.py table2             # the paper's recipe (GPU nodes)

table2: main results (SMART, the backbone alone, with the top-3 passages, prompted modular agents).
table3: agent ablation: four models trained on long trajectories with and without each agent
        (data_creation/make_ablation_data.py), and the full model with agents skipped at inference.
table4: training stages: the backbone, short trajectories only, long only, short then long.
The table comes twice: ours scored under the paper protocol (Self-RAG's / ALCE's scoring, as the published numbers
were: like against like), then under the strict one (ours, the headline; smart/evaluation/protocols.py). Each of our
cells carries its 95% CI and n (from the run's metrics JSON); below each table, the comparisons it makes (table2:
SMART - each baseline; table3: each ablation - its full model; table4: each stage - short & long), per task, on the
items both runs answered, with a paired bootstrap 95% CI (smart/evaluation/paper.py paired_block).
Writes <RUN_DIR>/tables/<table>.md. Sizes and settings: the quickstart's environment variables at demo scale
(scripts/quickstart.sh); at paper scale also TASKS, ABLATION_SAMPLES (default 60000, as the paper's Table 3).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from smart import defaults, pipeline
from smart.evaluation import paper
from smart.io import atomic_write, exit_on_input_error


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=("table2", "table3", "table4"))
    p.add_argument("--paper_version", default="aaai", choices=paper.VERSIONS,
                   help="published numbers to compare with (default: the AAAI 2025 version)")
    p.add_argument("--render_only", action="store_true", help="print the table from the runs done so far")
    args = p.parse_args(argv)
    with exit_on_input_error():
        run = Path(os.environ.get("RUN_DIR", "runs/paper" if os.environ.get("PAPER") == "1" else "runs/quickstart"))
        setup = pipeline.paper_setup(run) if os.environ.get("PAPER") == "1" else pipeline.demo_setup(run, defaults.data_dir())
        if not args.render_only:
            seconds = pipeline.run_stages(pipeline.table_stages(args.table, setup), run)
            print(f"\n{args.table}: all stages done ({seconds:.0f} s this run)\n")
        ours, predictions = pipeline.table_results(args.table, setup, predictions=True)
        table = "\n".join(paper.render_table(args.table, ours, args.paper_version, protocol=protocol,
                                             predictions=predictions,
                                             settings=setup.settings if protocol == "strict" else None)
                          for protocol in ("paper", "strict"))  # the like-for-like comparison first
    out = run / "tables" / f"{args.table}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as f:
        f.write(table)
    print(table)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
