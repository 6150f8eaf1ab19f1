"""Build the offline demo training set and dev set from the embedded corpus (no network, no teacher model).

    python data_creation/build_demo_data.py --output_dir data/demo --n_train 100 --n_dev 50

Questions are derived from the articles (descriptions, topics, blanked lead sentences, true/false claims, two-article
comparisons) with varied phrasing, then run through the data-creation steps: rule intent (the article titles),
dense retrieval over the corpus (top --n_docs per query), the answer-matching locator, combine. Writes
train_long.jsonl, train_short.jsonl, dev.jsonl ({id, question, answers, ctxs}, articles disjoint from train) and
stats.json into --output_dir. The first run embeds the corpus (a few minutes on CPU), later runs reuse it.
"""
from __future__ import annotations

import argparse
import json
import logging

from smart import defaults
from smart.combine import load_tokenizer
from smart.demo_data import build_demo_data
from smart.io import InputError
from smart.teacher import cli_errors


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="data/demo", help="where the files go")
    p.add_argument("--n_train", type=int, default=100, help="training items (each: 1 long + 3 short records)")
    p.add_argument("--n_dev", type=int, default=50, help="dev questions")
    p.add_argument("--n_docs", type=int, default=3, help="passages retrieved per query")
    p.add_argument("--seed", type=int, default=0, help="seed of the article sample and phrasings")
    p.add_argument("--corpus_json", default=None,
                   help="the articles questions are made from (vital-articles JSON; default: the embedded corpus)")
    p.add_argument("--passages", default=defaults.EMBEDDED,
                   help="passage TSV to retrieve from ('embedded', or e.g. a subset TSV); only its articles are asked about")
    p.add_argument("--passages_embeddings", default=None,
                   help="glob of the TSV's embedding shards (default: computed and cached on first use)")
    p.add_argument("--model_name_or_path", default=defaults.EMBEDDED, help="query encoder (the one that made the embeddings)")
    p.add_argument("--tokenizer", default="embedded", help="tokenizer for the length stats ('none' to skip)")
    args = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    with cli_errors():
        if args.n_train < 1 or args.n_dev < 1 or args.n_docs < 1:
            raise InputError("--n_train, --n_dev and --n_docs must be at least 1")
        stats = build_demo_data(args.output_dir, args.n_train, args.n_dev, args.n_docs, args.seed, args.corpus_json,
                                args.passages, args.passages_embeddings, args.model_name_or_path,
                                load_tokenizer(args.tokenizer))
        print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
