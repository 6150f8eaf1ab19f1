"""Retrieval benchmark: embedding throughput (length-sorted vs corpus-order batches), and the index options.

    python bench/bench_retrieval.py                         # all parts, 1M vectors (about 20 min on 2 busy CPU cores)
    python bench/bench_retrieval.py --indexes_only --scale_n 100000   # a quick check of the index tables

Part 1 embeds passages of the embedded corpus with the embedded encoder: in its default precision against float32
(passages/s, and how many of the demo questions' top-10 passages agree), then twice more: batches in corpus order
(baseline) and batches sorted by length (what generate_passage_embeddings does). Part 2 compares every index option
(smart.retrieval.index.IndexOptions) with flat, the exact baseline, measured in the same run:
(a) on the embedded corpus's own ~12.3k passage embeddings, a few hundred demo questions as queries: recall@1/5/20
    against flat, bytes per vector, build seconds, queries/s; then n_probe / ef_search on the same built indexes;
(b) on --scale_n vectors shaped like the real ones (a real embedding plus Gaussian noise, renormalised), each option
    built in its own child process (so peaks do not accumulate): build seconds, peak RSS, queries/s, recall@20;
(c) from these, the plan for 21M x 768 (DPR Wikipedia with Contriever): RAM, disk and expected recall per option.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from smart import defaults  # noqa: E402
from smart.retrieval.index import (DEFAULT_EF_SEARCH, DEFAULT_N_PROBE, Index, IndexOptions, build_index,  # noqa: E402
                                   save_shard)
from smart.retrieval.passages import PassageStore  # noqa: E402

if TYPE_CHECKING:
    from smart.retrieval.encoder import Encoder


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
    """A few hundred distinct demo questions: the dev questions and long-trajectory training instructions of every
    data/demo_* folder (as built by the quickstart) and scripts/sample_questions.jsonl; else a few built-in ones."""
    demo = [path for pattern in ("demo_*/*_dev.jsonl", "demo_*/train_long.jsonl")
            for path in sorted(defaults.data_dir().glob(pattern))]
    if not demo:
        return QUESTIONS
    files = [*demo, defaults.REPO_ROOT / "scripts" / "sample_questions.jsonl"]
    items = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(item.get("question") or item["instruction"].split("</eoi>")[0].strip() for item in items))


def bench_precision(encoder: Encoder, texts: list[str], batch_size: int, k: int = 10) -> None:
    """The default encoder (bfloat16 on CPUs with bf16 instructions) against float32: passages/s and the overlap
    of the top-k passages the demo questions retrieve from these texts."""
    from smart.retrieval.encoder import Encoder  # torch: imported only where needed, so index children stay lean

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
    from smart.retrieval.encoder import Encoder, prepare_text

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


# ---------------------------------------------------------------- index options

TARGET_N, TARGET_DIM = 21_000_000, 768  # DPR's psgs_w100 with Contriever
ID_BYTES = 4 * len(str(TARGET_N))  # a passage id in RAM and in index_ids.npy (numpy str, 4 bytes a character)
GB = 1e9
WIDER_SEARCH = {"n_probe": 128, "ef_search": 512}  # the second search of each IVF / HNSW index in table (b)


def index_configs(dim: int) -> list[tuple[str, IndexOptions]]:
    """The options compared, for `dim`-d vectors (IVF-PQ with 8 and 12 dimensions per 1-byte code)."""
    plain = [(t, IndexOptions(t)) for t in ("flat", "sq16", "sq8", "ivf_flat", "ivf_sq16", "ivf_sq8")]
    pq = [(f"ivf_pq {dim // per}x8", IndexOptions("ivf_pq", n_subquantizers=dim // per)) for per in (8, 12)]
    return plain + pq + [("hnsw M=32", IndexOptions("hnsw", hnsw_m=32))]


def overlap(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean share of the true top-k among the found top-k (recall@k against the exact search)."""
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def vector_bytes(index: Index) -> tuple[float, int]:
    """(serialized bytes per vector beyond the empty trained index, of which the vector's code), e.g. 56 and 48 for
    IVF-PQ 48x8 (8 bytes of id): what scales with the number of vectors."""
    import faiss

    empty = faiss.clone_index(index.faiss)
    empty.reset()
    per_vector = (len(faiss.serialize_index(index.faiss)) - len(faiss.serialize_index(empty))) / len(index)
    storage = faiss.downcast_index(index.faiss.storage) if hasattr(index.faiss, "storage") else index.faiss
    return per_vector, int(storage.code_size)


def bench_real_embeddings(queries: np.ndarray, pattern: str, k: int = 20) -> list[dict]:
    """Table (a): every option over the embedded corpus's embeddings, against flat."""
    rows, built = [], {}
    for label, options in index_configs(queries.shape[1]):
        index, t_build = timed(lambda: build_index(pattern, options=options))
        (_, found), t_search = timed(lambda: index.search(queries, k))
        per_vector, code = vector_bytes(index)
        rows.append(dict(label=label, found=found, bytes=per_vector, code=code, build=t_build,
                         qps=len(queries) / t_search, factory=index.factory))
        built[options.index_type] = index
    truth, flat = rows[0]["found"], rows[0]
    print(f"\n## (a) Real embeddings: {len(built['flat'])} x {queries.shape[1]} (the embedded corpus), "
          f"{len(queries)} demo questions, k={k}, against flat")
    print(f"{'option':<16}{'faiss':<18}{'recall@1':>9}{'@5':>7}{'@20':>7}{'bytes/vec':>10}{'vs flat':>8}"
          f"{'build s':>9}{'queries/s':>11}{'vs flat':>8}")
    for row in rows:
        row["recall"] = {at: overlap(row["found"], truth, at) for at in (1, 5, 20)}
        print(f"{row['label']:<16}{row['factory']:<18}{row['recall'][1]:9.3f}{row['recall'][5]:7.3f}"
              f"{row['recall'][20]:7.3f}{row['bytes']:10.1f}{row['bytes'] / flat['bytes']:8.3f}{row['build']:9.2f}"
              f"{row['qps']:11.0f}{row['qps'] / flat['qps']:7.2f}x")
    print("\nsearch-time options on the same built index (no rebuild):")
    sweeps = [("ivf_sq8", "n_probe", (1, 4, 8, 16, 32, 64)), ("hnsw", "ef_search", (20, 40, 64, 128, 256))]
    for index_type, name, values in sweeps:
        index, cells = built[index_type], []
        for value in values:
            index.options = replace(index.options, **{name: value})
            (_, found), t_search = timed(lambda: index.search(queries, k))
            cells.append(f"{name} {value}: recall@20 {overlap(found, truth, k):.3f}, {len(queries) / t_search:.0f} q/s")
        print(f"{index.factory:<12}" + "; ".join(cells))
    return rows


def noise_like_real(real: np.ndarray, sample: int = 2000) -> float:
    """The noise norm at which two noisy copies of one real embedding are, on average, as similar as a real embedding
    and its nearest real neighbour: copies have cosine 1 / (1 + noise^2) = that median cosine."""
    similar = real[:sample] @ real.T
    similar[np.arange(len(similar)), np.arange(len(similar))] = -1
    return float(np.sqrt(1 / np.median(similar.max(axis=1)) - 1))


def write_like_real(directory: Path, real: np.ndarray, n: int, noise: float, shard_size: int = 250_000,
                    seed: int = 0) -> None:
    """`n` vectors shaped like the real ones (a random real embedding plus Gaussian noise of norm `noise`,
    renormalised), as .npy shards of `shard_size` in `directory`."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    for number, start in enumerate(range(0, n, shard_size)):
        count = min(shard_size, n - start)
        vectors = real[rng.integers(0, len(real), count)]
        vectors += rng.standard_normal(vectors.shape, dtype=np.float32) * (noise / np.sqrt(real.shape[1]))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        save_shard(directory / f"passages_{number:02d}.npy", np.arange(start, start + count).astype(str), [vectors])


def child_main(spec: dict) -> None:
    """In a fresh process: build one option over the shards, search (and again with `wider` search options), write
    timings, top-k and peak RSS."""
    import faiss

    faiss.omp_set_num_threads(spec["threads"])
    queries = np.load(spec["queries"])
    index, t_build = timed(lambda: build_index(spec["pattern"], options=IndexOptions(**spec["options"])))
    result = dict(build=t_build, factory=index.factory,
                  peak_rss=proc_status_bytes("self", "VmHWM"))  # not ru_maxrss: Linux keeps the parent's over exec
    for name, search in (("default", {}), ("wider", spec["wider"])):
        if name == "default" or search:
            index.options = replace(index.options, **search)
            (_, found), t_search = timed(lambda: index.search(queries, spec["k"]))
            result[name] = dict(found=found.tolist(), qps=len(queries) / t_search)
    Path(spec["out"]).write_text(json.dumps(result))


def proc_status_bytes(pid: int | str, field: str) -> int:
    """A memory figure of /proc/<pid>/status: VmHWM (peak RSS since exec), RssAnon (heap now: not mapped files)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def run_child(spec: dict, workdir: Path) -> dict:
    """`child_main` in a subprocess, its anonymous RSS sampled every 50 ms from here."""
    spec = dict(spec, out=str(workdir / "result.json"))
    with open(workdir / "child.log", "w") as log_file:
        child = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], stderr=log_file)
        peak_anon = 0
        while child.poll() is None:
            try:
                peak_anon = max(peak_anon, proc_status_bytes(child.pid, "RssAnon"))
            except (FileNotFoundError, ProcessLookupError, KeyError):  # exited, not yet reaped
                pass
            time.sleep(0.05)
    if child.returncode:
        raise RuntimeError(f"{spec['options']} failed:\n{(workdir / 'child.log').read_text()[-3000:]}")
    return dict(json.loads(Path(spec["out"]).read_text()), peak_anon=peak_anon)


def wider_search(options: IndexOptions) -> dict:
    """The WIDER_SEARCH option that applies to `options` ({} for exact scans)."""
    name = "n_probe" if options.is_ivf else "ef_search" if options.index_type == "hnsw" else None
    return {name: WIDER_SEARCH[name]} if name else {}


def bench_scale(real: np.ndarray, queries: np.ndarray, n: int, hnsw_n: int, threads: int, k: int = 20) -> list[dict]:
    """Table (b): each option built from shards of `n` vectors shaped like the real ones (HNSW: `hnsw_n`), in a child."""
    noise, rows, truth = noise_like_real(real), [], {}
    with tempfile.TemporaryDirectory(prefix="bench_retrieval_") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "queries.npy", queries)
        for label, options in index_configs(real.shape[1]):
            size = hnsw_n if options.index_type == "hnsw" else n
            spec = dict(pattern=str(tmp / f"n{size}" / "*"), queries=str(tmp / "queries.npy"), k=k, threads=threads)
            if size not in truth:  # the data set of this size, and flat's answers on it
                write_like_real(tmp / f"n{size}", real, size, noise)
                truth[size] = run_child(dict(spec, options=asdict(IndexOptions("flat")), wider={}), tmp)
            result = truth[size] if options.index_type == "flat" else run_child(
                dict(spec, options=asdict(options), wider=wider_search(options)), tmp)
            exact = np.array(truth[size]["default"]["found"])
            for search in ("default", "wider"):
                if search in result:
                    result[search]["recall"] = overlap(np.array(result[search]["found"]), exact, k)
            rows.append(dict(result, label=label, n=size, wider_search=wider_search(options)))
    flat = rows[0]
    print(f"\n## (b) Scale: vectors shaped like the real ones ({real.shape[1]}-d: a real embedding + noise of norm "
          f"{noise:.2f}, renormalised), {len(queries)} demo questions, k={k}, {threads} thread(s), one process each")
    print(f"{'option':<16}{'n':>10}{'build s':>9}{'peak RSS GB':>12}{'anon GB':>9}{'vs flat':>8}{'queries/s':>11}"
          f"{'vs flat':>8}{'recall@20':>10}   wider search: recall@20, queries/s")
    for row in rows:
        wider = "".join(f"{name} {value}: {row['wider']['recall']:.3f}, {row['wider']['qps']:.1f}"
                        for name, value in row["wider_search"].items())
        print(f"{row['label']:<16}{row['n']:>10}{row['build']:9.1f}{row['peak_rss'] / GB:12.2f}{row['peak_anon'] / GB:9.2f}"
              f"{row['peak_anon'] / flat['peak_anon']:8.2f}{row['default']['qps']:11.1f}"
              f"{row['default']['qps'] / flat['default']['qps']:7.2f}x{row['default']['recall']:10.3f}   {wider}")
    print(f"default search: n_probe {DEFAULT_N_PROBE}, ef_search {DEFAULT_EF_SEARCH}. Peak RSS counts the memory-mapped "
          "shard pages read (reclaimable page cache); anon = the process's own memory (index, training sample), "
          "sampled every 50 ms")
    return rows


def print_plan(real_rows: list[dict], scale_rows: list[dict], dim: int) -> None:
    """Table (c): RAM, disk and expected recall at TARGET_N x TARGET_DIM, scaled from the measured bytes per vector."""
    widen = TARGET_DIM / dim
    lists = IndexOptions("ivf_flat").lists(TARGET_N)
    scale_n, hnsw_n = scale_rows[0]["n"], next(row["n"] for row in scale_rows if row["label"].startswith("hnsw"))
    share = lists / IndexOptions("ivf_flat").lists(scale_n)  # n_probe at 21M for the same share of lists
    default_search = f"n_probe ~{min(DEFAULT_N_PROBE * share, lists):.0f}"
    wider = f"n_probe ~{min(WIDER_SEARCH['n_probe'] * share, lists):.0f}"
    print(f"\n## (c) Plan for {TARGET_N / 1e6:.0f}M x {TARGET_DIM}: codes scaled from {dim}-d by {widen:g} (IVF-PQ keeps "
          f"its dimensions per code), ids ({ID_BYTES} B) included; IVF default {lists} lists")
    print(f"recall@20 as measured at {scale_n:,} (search: {default_search} / ef_search {DEFAULT_EF_SEARCH}), wider "
          f"({wider} / ef_search {WIDER_SEARCH['ef_search']}), and on the 12.3k real embeddings (table a)")
    print(f"{'option':<16}{'bytes/vec':>10}{'RAM = disk GB':>14}{'build peak GB':>14}{'recall@20':>10}{'wider':>7}"
          f"{'12.3k real':>11}")
    for (label, options), real, scale in zip(index_configs(TARGET_DIM), real_rows, scale_rows):
        per_vector = real["bytes"] + real["code"] * (widen - 1)
        ram = TARGET_N * (per_vector + ID_BYTES) / GB
        sample = options.training_size(TARGET_N) * TARGET_DIM * 4 / GB if options.needs_training else 0
        wide = f"{scale['wider']['recall']:.3f}" if "wider" in scale else "-"
        print(f"{label:<16}{per_vector:10.0f}{ram:14.1f}{ram + sample:14.1f}{scale['default']['recall']:10.3f}"
              f"{wide:>7}{real['recall'][20]:11.3f}")
    print(f"recall@20: measured at {scale_n:,} vectors (HNSW at {hnsw_n:,}) with n_probe {DEFAULT_N_PROBE} and "
          f"{WIDER_SEARCH['n_probe']} of {IndexOptions('ivf_flat').lists(scale_n)} lists; at {TARGET_N / 1e6:.0f}M the "
          f"n_probe above probes the same share of the {lists} lists.\nThe saved index.faiss + index_ids.npy take what "
          f"the index takes in RAM. Not included: the {TARGET_N * TARGET_DIM * 4 / GB:.1f} GB of float32 shards on disk "
          "the index is built from, the passage store's ~0.5 GB of offsets.\nBuild peak = the index + its training "
          "sample (trained options); the shards are read memory-mapped, as reclaimable page cache.")


def bench_indexes(scale_n: int, hnsw_n: int, threads: int) -> None:
    """Part 2: tables (a), (b), (c)."""
    import faiss

    from smart.retrieval.encoder import Encoder
    from smart.retrieval.retriever import embed_passages

    faiss.omp_set_num_threads(threads)
    encoder_dir, tsv = defaults.resolve_encoder(defaults.EMBEDDED), defaults.resolve_passages(defaults.EMBEDDED)
    shard = embed_passages(encoder_dir, tsv, str(defaults.embeddings_dir()), progress=False)  # cached by the quickstart
    queries = Encoder(encoder_dir).encode(demo_questions())
    real_rows = bench_real_embeddings(queries, str(shard))
    scale_rows = bench_scale(np.load(shard), queries, scale_n, hnsw_n, threads)
    print_plan(real_rows, scale_rows, queries.shape[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n_passages", type=int, default=1000, help="embedded-corpus passages to embed (each way)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each batching, interleaved; best is kept")
    p.add_argument("--all_passages", action="store_true", help="embed the whole embedded corpus (~12.3k passages)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--indexes_only", action="store_true", help="skip part 1 (the encoder)")
    p.add_argument("--scale_n", type=int, default=1_000_000, help="vectors in table (b); e.g. 100000 for a quick check")
    p.add_argument("--hnsw_scale_n", type=int, default=None, help="vectors for HNSW in table (b) (default: --scale_n)")
    p.add_argument("--threads", type=int, default=1, help="FAISS threads")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one option of table (b), see child_main
    args = p.parse_args()
    if args.child:
        return child_main(json.loads(args.child))
    if not args.indexes_only:
        bench_embedding(None if args.all_passages else args.n_passages, args.batch_size, args.repeats)
        print(f"peak RSS so far: {peak_rss_gb():.2f} GiB")
    bench_indexes(args.scale_n, args.hnsw_scale_n or args.scale_n, args.threads)
    print(f"\npeak RSS (this process): {peak_rss_gb():.2f} GiB")


if __name__ == "__main__":
    main()
