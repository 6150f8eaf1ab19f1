"""The training sets of the paper's agent ablation (Table 3), derived from one long-trajectory file.

    python data_creation/make_ablation_data.py --input_file data/train_long.jsonl --output_dir data/ablations

Writes <output_dir>/train_long_<ablation>.jsonl for each --ablations entry: without the Intent Reconstructor
(`no_intent`: the chain opens with the retrieval block, the request was the query), without the Fact Locator
(`no_locator`: the generator follows the retrieval block and cites passages directly) and generator only
(`generator_only`: the answer alone). Each is trained as long trajectories (script_long_learning.sh). Records keep
their id and prompt and gain an `ablation` field that validate_data.py reads. Input records that are not clean long
trajectories (validate_data.py's checks) are left out, counted by problem and listed by id; prints a JSON report.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from smart.data.teacher import cli_errors
from smart.io import read_records, write_jsonl
from smart.trajectory import ABLATIONS, LONG, ablate_record, problem_kind, record_type, validate_record

SKIPPABLE = [a for a in ABLATIONS if a != "full"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help="long trajectories (.jsonl or .json)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--ablations", nargs="+", default=SKIPPABLE, choices=SKIPPABLE)
    args = p.parse_args(argv)
    with cli_errors():
        records = read_records(args.input_file)
        clean, left_out, ids = [], Counter(), defaultdict(list)
        for line, record in records:
            problems = [f"not a long trajectory (type {record.get('type')!r})"] if record_type(record) != LONG \
                else validate_record(record)
            for kind in {problem_kind(problem) for problem in problems}:
                left_out[kind] += 1
                ids[kind].append(str(record.get("id", f"{args.input_file}:{line}")))
            if not problems:
                clean.append(record)
        if not clean:
            sys.exit(f"error: {args.input_file}: no clean long trajectory to derive ablations from")
        written = {}
        for ablation in args.ablations:
            path = Path(args.output_dir) / f"train_long_{ablation}.jsonl"
            written[str(path)] = write_jsonl(path, (ablate_record(r, ablation) for r in clean))
        print(json.dumps({"records": len(records), "clean": len(clean), "written": written,
                          "left_out": dict(left_out.most_common()), "left_out_ids": {k: v[:5] for k, v in ids.items()}},
                         indent=1))


if __name__ == "__main__":
    main()
