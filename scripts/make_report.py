"""Write report.md (Table 2, agent diagnostics, timings, curves, trajectories), results_table.md, diagnostics.json
and PNG plots for a quickstart run folder (its eval/*.metrics.json and the predictions beside them).

    python scripts/make_report.py --run_dir runs/quickstart
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from smart.evaluation.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="the quickstart's RUN_DIR")
    args = parser.parse_args()
    run = Path(args.run_dir)
    settings_file = run / "settings.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    path = write_report(run, settings)
    print(f"wrote {path}, {run / 'results_table.md'}, {run / 'diagnostics.json'}")


if __name__ == "__main__":
    main()
