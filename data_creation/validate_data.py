"""Check trajectory files and print the number of records with each kind of problem.

    python data_creation/validate_data.py data/demo/train_long.jsonl data/demo/train_short.jsonl

Checks per record: required fields; long: balanced tags, each agent's end tag once, ends with </eog>, every passage
judged, facts verbatim inside their passages, citations in range and pointing at relevant passages; short: the prompt
ends with the right agent header after the earlier steps, the output is one well-formed step with its end tag.
Reads the authors' type names (intent_reconstructor, fac_locator, response_generator) too.
A long record with an `ablation` field (make_ablation_data.py) must hold exactly the steps that ablation keeps.
Exit status: 0 when every record is clean, 1 otherwise, 2 on unreadable input.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict

from smart.data.teacher import cli_errors
from smart.io import read_records
from smart.trajectory import problem_kind, record_type, validate_record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="trajectory files, .json or .jsonl")
    p.add_argument("--show_ids", type=int, default=5, help="record ids listed per problem kind")
    args = p.parse_args(argv)
    with cli_errors():
        types, kinds, ids = Counter(), Counter(), defaultdict(list)
        clean = total = 0
        for path in args.files:
            for line, record in read_records(path):
                total += 1
                types[record_type(record)] += 1
                problems = {problem_kind(problem) for problem in validate_record(record)}
                clean += not problems
                for kind in problems:
                    kinds[kind] += 1
                    ids[kind].append(f"{record.get('id', f'{path}:{line}')}")
        print(json.dumps({"records": total, "clean": clean, "types": dict(types),
                          "problems": dict(kinds.most_common()),
                          "problem_ids": {k: ids[k][:args.show_ids] for k in kinds}}, indent=1))
    sys.exit(0 if clean == total else 1)


if __name__ == "__main__":
    main()
