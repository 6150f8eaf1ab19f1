"""Write report.md, results_table.md and PNG plots for a quickstart run folder.

    python scripts/make_report.py --run_dir runs/quickstart
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from smart.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="the quickstart's RUN_DIR")
    args = parser.parse_args()
    run = Path(args.run_dir)
    settings_file = run / "settings.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    path = write_report(run, settings)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
