"""Split the real questions into the demo's dev sets and draw its training items (the input of create_data.sh).

    python data_creation/prepare_real_questions.py --output_dir data/real --n_train 300 --n_dev 200

Reads every *.jsonl of --questions_dir (default: the shipped data_creation/real_questions/, sources and licences in
its README). Per shape, a seeded shuffle puts --n_dev items (at most half of a shape) in dev, the rest in the training
pool. Writes:
- <output_dir>/dev_questions/{popqa,pubhealth,arc_c}.jsonl: the dev sets in the paper's evaluation file shapes
  (open questions, FEVER claims, multiple choice), without passages: retrieve them with
  multi_agent/passage_retrieval.py (static top-k, as the paper's evaluation files hold);
- <output_dir>/train_questions.jsonl: --n_train training items drawn from the pool by --mix (the source rows, with
  their `evidence`), for `bash data_creation/create_data.sh <that file> real <dir>`;
- <output_dir>/split.json: the counts per shape and source.
Dev and training items never share an id or a question.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from smart.data.real_questions import (DEFAULT_MIX, DEV_TASK, dev_record, load_real_questions, parse_mix, split,
                                       training_sample)
from smart.data.teacher import cli_errors
from smart.io import InputError, write_json, write_jsonl

QUESTIONS_DIR = Path(__file__).resolve().parent / "real_questions"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--questions_dir", default=str(QUESTIONS_DIR), help="folder of real-question *.jsonl files")
    p.add_argument("--output_dir", required=True, help="where the files go")
    p.add_argument("--n_train", type=int, default=300, help="training items drawn from the pool")
    p.add_argument("--n_dev", type=int, default=200, help="dev items per shape (at most half of the shape)")
    p.add_argument("--mix", default=",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()),
                   help="shares of the training items per shape (open, claim, choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training sample")
    args = p.parse_args(argv)
    with cli_errors():
        if args.n_train < 1 or args.n_dev < 1:
            raise InputError("--n_train and --n_dev must be at least 1")
        pool, dev = split(load_real_questions(args.questions_dir), args.n_dev, args.seed)
        train = training_sample(pool, args.n_train, parse_mix(args.mix), args.seed)
        out = Path(args.output_dir)
        for shape, rows in dev.items():
            write_jsonl(out / "dev_questions" / f"{DEV_TASK[shape]}.jsonl", [dev_record(shape, r) for r in rows])
        write_jsonl(out / "train_questions.jsonl", train)
        summary = {"dev": {DEV_TASK[s]: dict(Counter(r.get("source", "") for r in rows)) for s, rows in dev.items()},
                   "train": dict(Counter(r.get("source", "") for r in train)),
                   "pool": {s: len(rows) for s, rows in pool.items()}}
        write_json(out / "split.json", summary)
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
