"""Step 1: intent reconstruction. The teacher writes the search queries of each request (few-shot per task type).

    OPENAI_BASE_URL=... OPENAI_API_KEY=... python data_creation/reconstruct_intent.py \\
        --input_file items/nq.jsonl --output_file work/intent.jsonl --model_name gpt-4o-mini --concurrency 16

Input: unified items (data_creation/convert_data.py). Output: the items plus `queries` (at most --max_queries) and
`flags`, as JSONL appended per item: a rerun skips finished ids. Unusable replies (empty, cut, off-format, another
language) fall back to the request itself as the query, counted; bad rows (missing fields, unknown task types, empty
answers) are skipped and listed; a summary is printed and written to <output_file>.summary.json.
Exit status 1 when items failed after all retries: run the same command again to retry just those.
With --teacher answer (offline), items keep the `queries` they carry, else the request's own words without its
function words are the query (smart.data.intent.keyword_query).
"""
from __future__ import annotations

import argparse
import logging

from smart.data.intent import run_intent
from smart.data.teacher import add_teacher_args, cli_errors, make_teacher, report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help="unified items, .json or .jsonl")
    p.add_argument("--output_file", required=True, help="resumable .jsonl output")
    p.add_argument("--max_queries", type=int, default=3, help="cap on the queries per request")
    add_teacher_args(p, max_tokens=128)
    args = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    with cli_errors():
        report(args.output_file, run_intent(args.input_file, args.output_file, make_teacher(args), args.max_queries,
                                            args.concurrency))


if __name__ == "__main__":
    main()
