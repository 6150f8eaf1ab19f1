"""Retrieve passages for every item of JSON/JSONL files (the paper's Knowledge Retriever, static retrieval).

    python multi_agent/passage_retrieval.py --model_name_or_path facebook/contriever-msmarco \\
        --passages psgs_w100.tsv --passages_embeddings "wikipedia_embeddings/*" \\
        --data YOUR_INPUT_FILE --output_dir YOUR_OUTPUT_DIR --n_docs 25

Each item's query is its `queries` list (Intent Reconstructor output) if present, else `instruction`, else
`question` (or --query_field). Several queries per item each get the top n_docs, merged by rank without duplicates.
Output: <output_dir>/<input file name> (or --output_dir itself if it ends in .json/.jsonl), the same items plus
`ctxs: [{id, title, text, score}, ...]`, written atomically.
"""
from __future__ import annotations

import argparse
import glob
import logging
from pathlib import Path

from smart import defaults
from smart.io import InputError, exit_on_input_error, read_records, write_records
from smart.retrieval.encoder import add_text_and_dtype_arguments
from smart.retrieval.index import DEFAULT_EF_SEARCH, DEFAULT_N_PROBE, INDEX_TYPES, IndexOptions
from smart.retrieval.retriever import Retriever, TextOptions, ensure_embedded_index, retrieve_records, queries_of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", default=defaults.EMBEDDED,
                   help="query encoder: 'embedded', facebook/contriever-msmarco or a folder (the one that made the embeddings)")
    p.add_argument("--passages", default=defaults.EMBEDDED, help="passage TSV (id, text, title); 'embedded' = vital articles")
    p.add_argument("--passages_embeddings", default=None,
                   help="glob of embedding shards, e.g. \"wikipedia_embeddings/*\" (ours .npy or Contriever's pickles);"
                        " default: the embedded corpus' cached embeddings, computed on first use")
    p.add_argument("--data", required=True, help="input .json/.jsonl file, or a glob of them")
    p.add_argument("--output_dir", required=True,
                   help="output folder, each input written there under its own name (or, ending in .json/.jsonl, the output file)")
    p.add_argument("--n_docs", type=int, default=100, help="passages per query")
    p.add_argument("--query_field", default=None,
                   help="item field holding the query (a str or a list of str); default: queries, instruction, question")
    p.add_argument("--save_or_load_index", action="store_true",
                   help="save the FAISS index beside the embeddings and reuse it when the shards are unchanged")
    p.add_argument("--projection_size", type=int, default=None, help="embedding dimension to expect (default: from the shards)")
    p.add_argument("--index_type", choices=INDEX_TYPES, default=None,
                   help="flat = exact float32 scan; sq16/sq8 = exact scan over float16/8-bit codes (2x/4x smaller); "
                        "ivf_* = the same in IVF lists (searches --n_probe lists); ivf_pq; hnsw. Default: ivf_pq "
                        "with --n_subquantizers > 0, hnsw with --hnsw_m > 0, else flat")
    p.add_argument("--n_subquantizers", type=int, default=0, help="IVF-PQ with this many subquantizers; 0 = exact flat index")
    p.add_argument("--n_bits", type=int, default=8, help="bits per IVF-PQ subquantizer")
    p.add_argument("--hnsw_m", type=int, default=0, help="HNSW graph with M neighbours per node; 0 = off")
    p.add_argument("--n_lists", type=int, default=0, help="IVF lists (ivf_*); 0 = sqrt(number of passages)")
    p.add_argument("--n_probe", type=int, default=None,
                   help=f"IVF lists searched per query (default {DEFAULT_N_PROBE}); changing it needs no rebuild")
    p.add_argument("--ef_search", type=int, default=None,
                   help=f"HNSW candidates per query (default {DEFAULT_EF_SEARCH}); changing it needs no rebuild")
    p.add_argument("--indexing_batch_size", type=int, default=1_000_000, help="vectors added to the index at a time")
    p.add_argument("--per_gpu_batch_size", type=int, default=64, help="queries per encoder forward pass")
    p.add_argument("--question_maxlength", type=int, default=512, help="max tokens per query")
    add_text_and_dtype_arguments(p, "queries (use the passages' options)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    with exit_on_input_error():
        if args.n_docs < 1:
            raise InputError("--n_docs must be at least 1")
        if args.passages_embeddings is None and args.passages != defaults.EMBEDDED:
            raise InputError(f"--passages {args.passages}: give its embeddings with --passages_embeddings \"DIR/*\"")
        index_options = IndexOptions(args.index_type, args.n_lists, args.n_subquantizers, args.n_bits, args.hnsw_m,
                                     n_probe=args.n_probe, ef_search=args.ef_search)  # bad combinations fail here
        paths = sorted(glob.glob(args.data)) or [args.data]
        inputs = {path: read_records(path) for path in paths}
        for path, records in inputs.items():  # fail on bad items before the (slow) index is built
            for line, item in records:
                queries_of(item, path, line, args.query_field)
        options = dict(projection_size=args.projection_size, index_options=index_options,
                       indexing_batch_size=args.indexing_batch_size,
                       save_or_load_index=args.save_or_load_index, question_maxlength=args.question_maxlength,
                       text=TextOptions(False, args.lowercase, args.normalize_text),
                       dtype="float32" if args.no_fp16 else args.dtype)
        if args.passages_embeddings is None:
            retriever = ensure_embedded_index(args.model_name_or_path, args.passages,
                                              batch_size=args.per_gpu_batch_size, **options)
        else:
            retriever = Retriever.from_paths(args.model_name_or_path, args.passages, args.passages_embeddings,
                                             batch_size=args.per_gpu_batch_size, **options)
        as_file = Path(args.output_dir).suffix in (".json", ".jsonl")  # the SMART README passes an output file
        if as_file and len(inputs) > 1:
            raise InputError(f"--output_dir {args.output_dir} is a file name but --data matches {len(inputs)} files")
        for path, records in inputs.items():
            out = Path(args.output_dir) if as_file else Path(args.output_dir) / Path(path).name
            write_records(out, retrieve_records(retriever, records, path, args.n_docs, args.query_field))
            logging.info("wrote %s (%d items)", out, len(records))


if __name__ == "__main__":
    main()
