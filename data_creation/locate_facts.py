"""Step 3: fact locating. For each retrieved passage: the supporting sentence(s), or irrelevant.

    OPENAI_BASE_URL=... OPENAI_API_KEY=... python data_creation/locate_facts.py \\
        --input_file work/retrieved/intent.jsonl --output_file work/located.jsonl --model_name gpt-4o-mini

Input: items with `queries` and `ctxs` (step 2, multi_agent/passage_retrieval.py). Output: the items with
`relevant` and `fact` on every ctx, JSONL appended per item (a rerun skips finished ids). A teacher's fact must be a
verbatim span of its passage: close copies are snapped to the passage's sentences, others marked irrelevant; both
counted in the summary (<output_file>.summary.json), as are empty, cut, off-format or foreign-language replies.
Exit status 1 when items failed after all retries: run the same command again to retry just those.
--teacher answer: offline, answer-guided: per passage the sentence holding the gold answer (or the claim's words, or
the correct option) that shares the most words with the request; see smart.data.locator.best_sentence.
"""
from __future__ import annotations

import argparse
import logging

from smart.data.locator import run_locate
from smart.data.teacher import add_teacher_args, cli_errors, make_teacher, report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help="items with ctxs, .json or .jsonl")
    p.add_argument("--output_file", required=True, help="resumable .jsonl output")
    add_teacher_args(p, max_tokens=256)
    args = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    with cli_errors():
        report(args.output_file, run_locate(args.input_file, args.output_file, make_teacher(args), args.concurrency))


if __name__ == "__main__":
    main()
