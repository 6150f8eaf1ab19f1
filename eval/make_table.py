"""Print the paper's results table (methods x datasets, with SMART's published numbers) from metrics JSONs, once
per scoring protocol (smart.evaluation.protocols: strict, ours; paper, as the paper scored), each main score with its 95% CI
and n.

    python eval/make_table.py results/*.metrics.json
    python eval/make_table.py --paper_version preprint results/*.metrics.json   # the earlier preprint's numbers
"""
from __future__ import annotations

import argparse
import json
import sys

from smart.evaluation import paper, protocols
from smart.evaluation.paper import paper_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics_files", nargs="+", help="*.metrics.json written by eval/run_eval.py")
    p.add_argument("--paper_version", choices=list(paper.VERSIONS), default=paper.DEFAULT_VERSION,
                   help="which version of the paper the published row comes from: "
                        + "; ".join(f"{k}: {v}" for k, v in paper.VERSIONS.items()))
    args = p.parse_args(argv)
    runs = []
    for path in args.metrics_files:
        try:
            with open(path, encoding="utf-8") as f:
                runs.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 2
    print("\n\n".join(f"{protocols.TITLES[protocol]}\n\n{paper_table(runs, args.paper_version, protocol)}"
                      for protocol in protocols.PROTOCOLS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
