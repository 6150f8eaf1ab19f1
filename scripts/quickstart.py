"""The main job: every SMART stage, for real, on the embedded defaults, cached stage by stage.

prepare -> embed -> retrieve samples -> demo trajectories -> stage 1 (short) -> stage 2 (long) -> evaluate SMART
and the baselines -> report. Each stage is the very command a researcher would type, skipped when unchanged since it
last succeeded (see smart/pipeline.py). Sizes come from environment variables, see `scripts/quickstart.sh`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from smart import defaults, pipeline
from smart.io import write_json


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    setup = pipeline.demo_setup(Path(os.environ.get("RUN_DIR", "runs/quickstart")), defaults.data_dir())
    setup.run.mkdir(parents=True, exist_ok=True)
    write_json(setup.run / "settings.json", setup.settings)
    seconds = pipeline.run_stages(pipeline.quickstart_stages(setup), setup.run)
    print(f"\nall stages done ({seconds:.0f} s this run)\n")
    print((setup.run / "results_table.md").read_text())
    print((setup.run / "results_table_paper.md").read_text())


if __name__ == "__main__":
    main()
