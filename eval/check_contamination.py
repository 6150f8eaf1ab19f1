"""Contamination check: the overlap between training trajectories and each evaluation file.

    python eval/check_contamination.py --train data/train_short.jsonl data/train_long.jsonl \\
        --eval_files popqa.jsonl pubhealth.jsonl arc_c.jsonl [--ngram 8] [--examples 3] [--json contamination.json]

Per evaluation file: its rows, how many share with the training data the same normalized question, a source id, an
n-gram of question tokens (--ngram; shorter questions compared whole), any of the three, and the first overlapping
rows (evaluation question <-> training question). --train takes trajectory files as data_creation/combine_data.py
writes them, or question files ({id, question}); an evaluation file's task comes from its name (popqa, pubhealth,
arc_c, squad, asqa, qa, or the paper's file names) unless --tasks names it. Bad input: one `error:` line, exit 2.
"""
from __future__ import annotations

import argparse
import sys

from smart.evaluation.contamination import DEFAULT_NGRAM, check, format_report, infer_task, summary
from smart.evaluation.tasks import TASKS
from smart.io import InputError, exit_on_input_error, write_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="training trajectory (or question) files, .jsonl/.json")
    p.add_argument("--eval_files", nargs="+", required=True, help="evaluation files in the paper's shapes")
    p.add_argument("--tasks", nargs="+", choices=[*TASKS, "auto"], default=None,
                   help="the task of each evaluation file, in order ('auto': from the file name; default: all auto)")
    p.add_argument("--ngram", type=int, default=DEFAULT_NGRAM, help="n of the shared question n-grams")
    p.add_argument("--examples", type=int, default=3, help="overlapping rows shown per evaluation file")
    p.add_argument("--json", default=None, help="write the numbers to this JSON file")
    args = p.parse_args(argv)
    with exit_on_input_error():
        tasks = args.tasks or ["auto"] * len(args.eval_files)
        if len(tasks) != len(args.eval_files):
            raise InputError(f"--tasks: {len(tasks)} names for {len(args.eval_files)} --eval_files")
        evals = [(path, infer_task(path) if task == "auto" else task) for path, task in zip(args.eval_files, tasks)]
        overlap = check(args.train, evals, args.ngram)
        print(format_report(overlap, args.examples))
        if args.json:
            write_json(args.json, summary(overlap, args.examples))
            print(f"numbers written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
