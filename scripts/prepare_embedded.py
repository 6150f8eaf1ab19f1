"""Prepare the embedded defaults once: corpus -> psgs_w100-format TSV, SmolLM2 GGUF -> dense HF checkpoint.

    python scripts/prepare_embedded.py                 # everything, into $SMART_DATA (default ./data)
    python scripts/prepare_embedded.py --max_articles 60 --subset_json data/small.json --subset_tsv data/small.tsv
"""
from __future__ import annotations

import argparse
import logging

from smart import defaults
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_articles", type=int, default=0,
                        help="also write a smaller corpus of this many articles spread over the whole")
    parser.add_argument("--subset_json", default=None, help="that corpus as vital-articles JSON")
    parser.add_argument("--subset_tsv", default=None, help="that corpus as psgs_w100-format TSV")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = defaults.prepare_all()
    if args.max_articles:
        if not (args.subset_json and args.subset_tsv):
            parser.error("--max_articles needs --subset_json and --subset_tsv")
        n = defaults.write_article_subset(defaults.corpus_json(), args.subset_json, args.subset_tsv, args.max_articles)
        paths["subset"] = args.subset_tsv
        print(f"subset: {args.max_articles} articles, {n} passages")
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
