"""Embed a psgs_w100-format passage TSV, one shard per run (Contriever's command; resumable).

    python multi_agent/generate_passage_embeddings.py --model_name_or_path facebook/contriever-msmarco \\
        --passages psgs_w100.tsv --output_dir wikipedia_embeddings --shard_id 0 --num_shards 4

Writes <output_dir>/<prefix>_<shard_id>.npy (float32 [n, d]) and <prefix>_<shard_id>.ids.npy (passage ids).
A killed run continues from its last finished chunk; an unchanged rerun does nothing.
"""
from __future__ import annotations

import argparse
import logging

from smart import defaults
from smart.io import exit_on_input_error
from smart.retrieval.encoder import add_text_and_dtype_arguments
from smart.retrieval.retriever import TextOptions, embed_passages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", default=defaults.EMBEDDED,
                   help="encoder: 'embedded' (all-MiniLM-L6-v2, offline), facebook/contriever-msmarco, or a folder")
    p.add_argument("--passages", default=defaults.EMBEDDED,
                   help="passage TSV (id, text, title), e.g. psgs_w100.tsv; 'embedded' = the vital-articles corpus")
    p.add_argument("--output_dir", default=str(defaults.embeddings_dir()),
                   help="folder for the shard files (default: %(default)s, where the embedded index is cached)")
    p.add_argument("--prefix", default="passages", help="shard file name prefix")
    p.add_argument("--shard_id", type=int, default=0, help="which shard of the passages to embed")
    p.add_argument("--num_shards", type=int, default=1, help="number of equal shards the passages are split into")
    p.add_argument("--per_gpu_batch_size", type=int, default=64, help="passages per forward pass")
    p.add_argument("--passage_maxlength", type=int, default=256, help="max tokens per passage (longer are cut)")
    p.add_argument("--no_title", action="store_true", help="embed the text alone, not 'title text'")
    add_text_and_dtype_arguments(p, "passages")
    p.add_argument("--chunk_size", type=int, default=2000, help="passages per saved chunk (the unit of resuming)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    with exit_on_input_error():
        embed_passages(
            defaults.resolve_encoder(args.model_name_or_path), defaults.resolve_passages(args.passages),
            args.output_dir, shard_id=args.shard_id, num_shards=args.num_shards, batch_size=args.per_gpu_batch_size,
            passage_maxlength=args.passage_maxlength, chunk_size=args.chunk_size, prefix=args.prefix,
            text=TextOptions(args.no_title, args.lowercase, args.normalize_text),
            dtype="float32" if args.no_fp16 else args.dtype,
        )


if __name__ == "__main__":
    main()
