"""Bring a dataset file to the unified data-creation item {id, dataset_name, task_type, instruction, input, output}.

    python data_creation/convert_data.py --input_file nq_train.jsonl --dataset_name nq --output_file items/nq.jsonl

Shapes (auto-detected, or --shape): qa (question + answers: NQ, PopQA, HotpotQA), claim (claim + label: FEVER,
PubHealth), choices (question + choices + answerKey: ARC, OpenBookQA), dialogue (history + question + answer, or KILT
input/output: WoW, QReCC), instruction (instruction/input/output: Alpaca). Rows that cannot be converted (missing
fields, empty answers, unknown labels) are counted and listed, and the rest is written.
"""
from __future__ import annotations

import argparse
import json
import random

from smart.data.convert import SHAPES, TASK_TYPES, convert_file
from smart.data.teacher import cli_errors
from smart.io import write_records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help=".json (a list, or {'data': [...]}) or .jsonl")
    p.add_argument("--dataset_name", required=True, help="e.g. nq, popqa, hotpotqa, fever, pubhealth, arc_c, wow, qrecc, alpaca")
    p.add_argument("--output_file", required=True, help="unified items, .jsonl or .json")
    p.add_argument("--shape", default="auto", choices=SHAPES, help="source shape (default: detected per row)")
    p.add_argument("--task_type", default=None, choices=TASK_TYPES, help="default: from the dataset name, else the shape")
    p.add_argument("--n", type=int, default=None, help="keep a random sample of this many items")
    p.add_argument("--seed", type=int, default=0, help="seed of the --n sample")
    args = p.parse_args(argv)
    with cli_errors():
        items, rejected = convert_file(args.input_file, args.dataset_name, args.shape, args.task_type)
        if args.n is not None and len(items) > args.n:
            items = random.Random(args.seed).sample(items, args.n)
        write_records(args.output_file, items)
        print(json.dumps({"written": len(items), "rejected": {k: len(v) for k, v in rejected.items()},
                          "rejected_rows": {k: v[:10] for k, v in rejected.items()}}, indent=1))


if __name__ == "__main__":
    main()
