"""Prepare the embedded defaults once: corpus -> psgs_w100-format TSV, SmolLM2 GGUF -> dense HF checkpoint.

    python scripts/prepare_embedded.py                 # everything, into $SMART_DATA (default ./data)
    python scripts/prepare_embedded.py --max_articles 60 --subset_out data/psgs_small.tsv
"""
from __future__ import annotations

import argparse
import logging

from smart import defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_articles", type=int, default=0,
                        help="also write a smaller corpus with the passages of every k-th article, about this many articles")
    parser.add_argument("--subset_out", default=None, help="path of that smaller corpus TSV")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = defaults.prepare_all()
    if args.max_articles:
        if not args.subset_out:
            parser.error("--max_articles needs --subset_out")
        n = defaults.write_article_subset(paths["passages"], args.subset_out, args.max_articles)
        paths["subset"] = args.subset_out
        print(f"subset: {n} passages")
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
