"""Bring the authors' released trajectory files (github yueshengbin/SMART) to our exact format, to train as-is.

    python data_creation/normalize_authors_data.py --input_file long_trajectory.json short_trajectory.json \\
        --output_file data/authors_train.jsonl

Repairs, counted by kind in the report: agent headers without their colon (`<|Locator|>\\n`), the `<|retrieval|>`
opening tag, an empty citation list (`[Cite]: </eog>`), the authors' type names (` fac_locator,`,
`intent_reconstructor`, `response_generator`), a missing type (long), a long request without `</eoi>`, a generator
prompt whose locator block has no relevant fact (becomes generator_no_facts), and stray whitespace (each step is
parsed and rendered again). A record is written only when it then passes validate_data.py's checks with no problem
and nothing but whitespace changed besides those repairs; the others are skipped and listed by reason (the
validator's problems) and location. See smart/data/authors_data.py.
Exit status: 0 (skipped records are listed, not an error), 2 on unreadable input (the error names file and line).
"""
from __future__ import annotations

import argparse
import json
import sys

from smart.data.authors_data import normalize_files
from smart.data.teacher import cli_errors
from smart.io import write_records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, nargs="+", help="the authors' trajectory files, .json or .jsonl")
    p.add_argument("--output_file", required=True, help="normalized records, .jsonl (.json: one list), written atomically")
    p.add_argument("--show_skipped", type=int, default=10, help="skipped records listed per reason")
    args = p.parse_args(argv)
    with cli_errors():
        result = normalize_files(args.input_file)
        write_records(args.output_file, result.records)
    print(json.dumps(result.report(args.show_skipped), indent=1))
    if result.skipped:
        print(f"warning: {result.records_in - len(result.records)} of {result.records_in} records skipped "
              "(reasons and locations in the report)", file=sys.stderr)


if __name__ == "__main__":
    main()
