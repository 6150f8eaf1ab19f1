"""Build the offline demo training set and dev set from the embedded corpus (no network, no teacher model).

    python data_creation/build_demo_data.py --output_dir data/demo --n_train 400 --n_dev 50

Facts are read off the corpus passages (occupations, nationalities, what a thing is, places, capitals, years,
creators) and turned into PopQA-like questions, PubHealth-like true/false claims, ARC-like four-choice questions and
two-entity questions, about 20% of them with retrieval that misses; then run through the data-creation steps: rule
intent, dense retrieval over the corpus (top --n_docs per query), the answer-matching locator, combine. Writes
train_long.jsonl, train_short.jsonl, the dev sets popqa_dev.jsonl, pubhealth_dev.jsonl, arc_c_dev.jsonl (the paper's
file shapes with ctxs retrieved by the question; articles and phrasings disjoint from train) and stats.json into
--output_dir. The first run embeds the corpus (a few minutes on CPU), later runs reuse it.
"""
from __future__ import annotations

import argparse
import json
import logging

from smart import defaults
from smart.data.combine import load_tokenizer
from smart.data.demo_data import SPAN_FACTS_PER_ROUND, build_demo_data
from smart.data.teacher import cli_errors
from smart.io import InputError


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="data/demo", help="where the files go")
    p.add_argument("--n_train", type=int, default=400, help="training items (each: 1 long + 2-3 short records)")
    p.add_argument("--n_dev", type=int, default=50, help="dev questions per dev task")
    p.add_argument("--n_docs", type=int, default=3, help="passages retrieved per query")
    p.add_argument("--seed", type=int, default=0, help="seed of the article sample and phrasings")
    p.add_argument("--corpus_json", default=None,
                   help="vital-articles JSON giving each article's topic (for distractors; default: the embedded one)")
    p.add_argument("--passages", default=defaults.EMBEDDED,
                   help="passage TSV the facts are read from and retrieved from ('embedded', or e.g. a subset TSV)")
    p.add_argument("--passages_embeddings", default=None,
                   help="glob of the TSV's embedding shards (default: computed and cached on first use)")
    p.add_argument("--model_name_or_path", default=defaults.EMBEDDED, help="query encoder (the one that made the embeddings)")
    p.add_argument("--tokenizer", default="embedded", help="tokenizer for the length stats ('none' to skip)")
    p.add_argument("--span_facts", type=int, default=SPAN_FACTS_PER_ROUND,
                   help="span facts (a name, year or count of any sentence, asked in its words) drawn per 13 relation "
                        "facts, in training and dev alike; 0 = relations only")
    args = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    with cli_errors():
        if args.n_train < 1 or args.n_dev < 1 or args.n_docs < 1 or args.span_facts < 0:
            raise InputError("--n_train, --n_dev and --n_docs must be at least 1, --span_facts at least 0")
        stats = build_demo_data(args.output_dir, args.n_train, args.n_dev, args.n_docs, args.seed, args.corpus_json,
                                args.passages, args.passages_embeddings, args.model_name_or_path,
                                load_tokenizer(args.tokenizer), args.span_facts)
        print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
