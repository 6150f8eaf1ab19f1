"""Optional step between fact locating and combine: a chat model writes the open questions' answers.

    python data_creation/write_answers.py --input_file work/located.jsonl --output_file work/answered.jsonl \\
        --teacher vllm --model_name embedded --concurrency 64

The model (its chat template, greedy) first answers from the item's retrieved passages as vanilla RAG would; the
complete sentences of its reply's first paragraph, up to 30 words, become the item's answer when they hold a gold
answer, else its first sentence cut at the first clause break after the gold answer (flag `answer_by_model`).
Otherwise it reads the located facts, then the request, kept on the same terms (`answer_by_facts`); otherwise the
first located fact whose first sentence holds a gold answer, clause-cut, is the answer (`answer_by_fact_span`);
otherwise the gold answer stays (`answer_gold`). Claims and multiple-choice items pass through unchanged. Items go to
the model in ordered chunks of --concurrency items (one call per chunk and prompt kind), so a local model gives the
same answers every run. Resumable (a rerun skips finished items); the summary goes to <output_file>.summary.json.
data_creation/create_data.sh runs it when ANSWER_TEACHER is set (ANSWER_MODEL names the model).
"""
from __future__ import annotations

import argparse
import logging

from smart.data.answer import run_answers
from smart.data.teacher import add_teacher_args, cli_errors, make_teacher, report
from smart.io import InputError


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help="located items (locate_facts.py), .json or .jsonl")
    p.add_argument("--output_file", required=True, help="resumable .jsonl output")
    add_teacher_args(p, max_tokens=48)
    args = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    with cli_errors():
        if args.teacher == "answer":
            raise InputError("--teacher answer writes no answers: name a model teacher (openai, hf or vllm)")
        report(args.output_file, run_answers(args.input_file, args.output_file, make_teacher(args), args.concurrency))


if __name__ == "__main__":
    main()
