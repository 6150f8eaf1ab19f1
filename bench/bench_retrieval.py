"""Retrieval benchmark: embedding throughput (length-sorted vs corpus-order batches), index build, query speed, RSS.

    python bench/bench_retrieval.py                      # a few minutes on 2 CPU cores
    python bench/bench_retrieval.py --all_passages --synthetic_n 1000000

Part 1 embeds passages of the embedded corpus with the embedded encoder: in its default precision against float32
(passages/s, and how many of the demo questions' top-10 passages agree), then twice more: batches in corpus order
(baseline) and batches sorted by length (what generate_passage_embeddings does). Part 2 builds flat / HNSW / IVF-PQ indexes
over a synthetic N x 768 set (clustered Gaussian, Contriever's width) and times queries; flat is the baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from smart import defaults  # noqa: E402
from smart.encoder import Encoder, prepare_text  # noqa: E402
from smart.index import Index  # noqa: E402
from smart.passages import PassageStore  # noqa: E402


QUESTIONS = ["Who painted The Starry Night?", "What is the chemical symbol of gold?", "When did World War II end?",
             "How do plants turn sunlight into energy?", "Which ocean lies between Africa and Australia?",
             "Who wrote Hamlet?", "What is the capital of Japan?", "What causes earthquakes?"]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def demo_questions() -> list[str]:
    """The demo dev questions (data/demo_*/*_dev.jsonl, as built by the quickstart), else a few built-in ones."""
    files = sorted(defaults.data_dir().glob("demo_*/*_dev.jsonl"))
    questions = [json.loads(line)["question"] for f in files[:3] for line in f.read_text().splitlines() if line]
    return questions or QUESTIONS


def bench_precision(encoder: Encoder, texts: list[str], batch_size: int, k: int = 10) -> None:
    """The default encoder (bfloat16 on CPUs with bf16 instructions) against float32: passages/s and the overlap
    of the top-k passages the demo questions retrieve from these texts."""
    exact = Encoder(defaults.resolve_encoder(defaults.EMBEDDED), max_length=256, dtype="float32")
    exact.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    fast_vectors, t_fast = timed(lambda: encoder.encode(texts, batch_size=batch_size))
    exact_vectors, t_exact = timed(lambda: exact.encode(texts, batch_size=batch_size))
    questions = demo_questions()
    top = [_flat(v).search(e.encode(questions), k)[1] for v, e in ((fast_vectors, encoder), (exact_vectors, exact))]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(*top)])
    dtype = str(next(encoder.model.parameters()).dtype).removeprefix("torch.")
    print(f"\n## Encoder precision: default ({dtype}) vs float32, {len(texts)} passages, {len(questions)} questions")
    print(f"{dtype:>9}: {len(texts) / t_fast:8.1f} passages/s")
    print(f"{'float32':>9}: {len(texts) / t_exact:8.1f} passages/s")
    print(f"ratio {dtype}/float32: {t_exact / t_fast:.2f}x; top-{k} overlap with float32: {overlap:.3f}; "
          f"min cosine {float((fast_vectors * exact_vectors).sum(1).min()):.5f}")


def bench_embedding(n: int | None, batch_size: int, repeats: int) -> np.ndarray:
    store = PassageStore(defaults.prepare_passages())
    texts = [prepare_text(p["text"], p["title"]) for p in store.iter_rows(0, n or len(store))]
    encoder = Encoder(defaults.resolve_encoder(defaults.EMBEDDED), max_length=256)
    encoder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    bench_precision(encoder, texts, batch_size)
    t_unsorted = t_sorted = float("inf")
    for _ in range(repeats):  # interleaved, best of each: fair on a shared machine
        unsorted, t = timed(lambda: encoder.encode(texts, batch_size=batch_size, sort_by_length=False))
        t_unsorted = min(t_unsorted, t)
        sorted_, t = timed(lambda: encoder.encode(texts, batch_size=batch_size, sort_by_length=True))
        t_sorted = min(t_sorted, t)
    cosines = (unsorted * sorted_).sum(1) / np.linalg.norm(unsorted, axis=1) / np.linalg.norm(sorted_, axis=1)
    agreement = float(cosines.min())  # bfloat16 sums move with a batch's padding
    assert agreement > 0.999, f"sorted batching changed the embeddings (min cosine {agreement:.5f})"
    print(f"\n## Embedding {len(texts)} passages ({encoder.device}, batch {batch_size}, max_length 256, "
          f"best of {repeats})")
    print(f"corpus-order batches : {len(texts) / t_unsorted:8.1f} passages/s")
    print(f"length-sorted batches: {len(texts) / t_sorted:8.1f} passages/s")
    print(f"ratio sorted/unsorted: {t_unsorted / t_sorted:8.2f}x (min cosine between the two: {agreement:.5f})")
    _flat(sorted_[:1])  # warm-up (loads faiss)
    index, t_build = timed(lambda: _flat(sorted_))
    _, t_single = timed(lambda: [index.search(encoder.encode([q]), 10) for q in QUESTIONS])
    _, t_batch = timed(lambda: index.search(encoder.encode(QUESTIONS * 4), 10))
    print(f"flat index build     : {t_build * 1000:8.1f} ms for {len(texts)} x {encoder.dim}")
    print(f"question latency     : {t_single / len(QUESTIONS) * 1000:8.1f} ms (encode + search, one at a time)")
    print(f"questions/s, batched : {4 * len(QUESTIONS) / t_batch:8.1f}")
    return sorted_


def _flat(vectors: np.ndarray) -> Index:
    index = Index(vectors.shape[1])
    index.add(np.arange(len(vectors)).astype(str), vectors)
    return index


def synthetic(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered vectors (like real embeddings, unlike uniform noise) and queries near them."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(16, n // 1000), dim)).astype(np.float32)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        part = min(100_000, n - start)
        vectors[start : start + part] = centers[rng.integers(0, len(centers), part)] + 0.5 * rng.standard_normal((part, dim), dtype=np.float32)
    queries = vectors[rng.integers(0, n, 256)] + 0.3 * rng.standard_normal((256, dim), dtype=np.float32)
    return vectors, queries


def bench_indexes(n: int, dim: int, k: int = 10) -> None:
    vectors, queries = synthetic(n, dim)
    ids = np.arange(n).astype(str)
    print(f"\n## Synthetic index: {n} x {dim} float32 ({vectors.nbytes / 2**30:.2f} GiB), {len(queries)} queries, k={k}")
    print(f"{'index':<22}{'build s':>9}{'ms/query (1)':>14}{'queries/s (256)':>17}{'recall@10':>11}"
          f"{'top1 in 10':>12}{'vs flat q/s':>13}")
    truth, flat_qps = None, None
    configs = [("flat (exact IP)", {}), ("hnsw M=32", {"hnsw_m": 32}),
               ("ivfpq 96x8 nprobe 32", {"n_subquantizers": 96, "n_bits": 8})]
    for name, options in configs:
        index = Index(dim, **options)
        _, t_build = timed(lambda: index.add(ids, vectors))
        _, t_one = timed(lambda: [index.search(queries[i : i + 1], k) for i in range(32)])
        (_, found), t_batch = timed(lambda: index.search(queries, k))
        truth = found if truth is None else truth
        qps = len(queries) / t_batch
        flat_qps = flat_qps or qps
        recall = np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)])
        top1 = np.mean([t[0] in f for f, t in zip(found, truth)])
        print(f"{name:<22}{t_build:9.2f}{t_one / 32 * 1000:14.2f}{qps:17.0f}{recall:11.3f}{top1:12.3f}"
              f"{qps / flat_qps:12.1f}x")
        del index


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n_passages", type=int, default=1000, help="embedded-corpus passages to embed (each way)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each batching, interleaved; best is kept")
    p.add_argument("--all_passages", action="store_true", help="embed the whole embedded corpus (~12.3k passages)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--synthetic_n", type=int, default=30_000, help="vectors in the synthetic index (paper: 21M)")
    p.add_argument("--dim", type=int, default=768, help="synthetic vector width (Contriever: 768)")
    args = p.parse_args()
    bench_embedding(None if args.all_passages else args.n_passages, args.batch_size, args.repeats)
    print(f"peak RSS so far: {peak_rss_gb():.2f} GiB")
    bench_indexes(args.synthetic_n, args.dim)
    print(f"\npeak RSS: {peak_rss_gb():.2f} GiB")


if __name__ == "__main__":
    main()
