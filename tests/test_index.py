"""FAISS indexes against brute force, their options, saved indexes, training samples, split indexes, shard files,
and the restricted unpickler for Contriever's shards."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smart.io import InputError
from smart.retrieval import index as index_module
from smart.retrieval.index import (INDEX_TYPES, Index, IndexOptions, build_index, ids_path, load_contriever_shard, load_shard,
                         merge_topk, save_shard, shard_files, training_sample)

REPO = Path(__file__).resolve().parent.parent
DIM = 32
# one option set per index type, small enough for 3000 x 32 vectors
OPTIONS = {t: IndexOptions(t, n_subquantizers=8 if t == "ivf_pq" else 0, hnsw_m=16 if t == "hnsw" else 0)
           for t in INDEX_TYPES}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, DIM)).astype(np.float32)
    queries = rng.standard_normal((50, DIM)).astype(np.float32)
    ids = np.array([str(i + 1) for i in range(len(vectors))])
    return ids, vectors, queries


def brute_force(vectors, queries, k):
    scores = queries @ vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), top


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def write_shards(directory, ids, vectors, n=2):
    directory.mkdir(parents=True, exist_ok=True)
    for i, (part_ids, part) in enumerate(zip(np.array_split(ids, n), np.array_split(vectors, n))):
        save_shard(directory / f"passages_{i:02d}.npy", part_ids, [part[: len(part) // 2], part[len(part) // 2 :]])


def forbid_shard_reads(monkeypatch):
    """From here on (until monkeypatch.undo()) an index can only come from a saved one: reading a shard fails."""
    monkeypatch.setattr(index_module, "load_shard", lambda *args, **kwargs: pytest.fail("the saved index was rebuilt"))


def test_flat_equals_brute_force(data):
    ids, vectors, queries = data
    index = Index(DIM)
    index.add(ids[:1000], vectors[:1000], batch_size=300)
    index.add(ids[1000:], vectors[1000:], batch_size=300)
    scores, positions = index.search(queries, 10)
    ref_scores, ref_positions = brute_force(vectors, queries, 10)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert recall(positions, ref_positions) == 1.0
    assert list(index.all_ids[positions[0]]) == list(ids[positions[0]])


@pytest.mark.parametrize("index_type, min_recall, score_atol", [
    ("sq16", 0.99, 0.01),  # float16 codes: the exact ranking up to near-ties
    ("sq8", 0.95, 0.2),  # 8-bit codes: scores off by about one quantization step per dimension
])
def test_exact_scan_codes_match_flat(tmp_path, data, index_type, min_recall, score_atol):
    ids, vectors, queries = data
    write_shards(tmp_path, ids, vectors)
    index = build_index(str(tmp_path / "*"), options=OPTIONS[index_type])
    scores, positions = index.search(queries, 10)
    ref_scores, ref_positions = brute_force(vectors, queries, 10)
    assert recall(positions, ref_positions) >= min_recall
    assert np.abs(scores - ref_scores).max() < score_atol
    assert index.faiss.code_size == {"sq16": 2, "sq8": 1}[index_type] * DIM  # 2x, 4x smaller than float32


@pytest.mark.parametrize("index_type", ["ivf_flat", "ivf_sq16"])
def test_ivf_probing_every_list_is_exact(tmp_path, data, index_type):
    ids, vectors, queries = data
    write_shards(tmp_path, ids, vectors)
    options = OPTIONS[index_type]
    index = build_index(str(tmp_path / "*"), options=options)
    n_lists = options.lists(len(vectors))
    assert index.factory == f"IVF{n_lists},{'Flat' if index_type == 'ivf_flat' else 'SQfp16'}"
    index.options = IndexOptions(index_type, n_probe=n_lists)
    assert recall(index.search(queries, 10)[1], brute_force(vectors, queries, 10)[1]) >= 0.99


def test_hnsw_and_ivfpq_recall(tmp_path, data):
    ids, vectors, queries = data
    _, truth = brute_force(vectors, queries, 10)
    write_shards(tmp_path, ids, vectors)
    hnsw = build_index(str(tmp_path / "*"), options=OPTIONS["hnsw"])
    assert hnsw.factory == "HNSW16" and recall(hnsw.search(queries, 10)[1], truth) > 0.9
    ivfpq = build_index(str(tmp_path / "*"), options=IndexOptions("ivf_pq", n_subquantizers=8, n_bits=6, n_probe=64))
    found = ivfpq.search(queries, 10)[1]
    assert ivfpq.factory.endswith("PQ8x6np") and recall(found, truth) > 0.3
    assert recall(found, truth) > 10 * 10 / len(vectors)  # far above chance


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_save_and_load_each_index_type(tmp_path, data, index_type, monkeypatch):
    ids, vectors, queries = data
    write_shards(tmp_path, ids, vectors)
    built = build_index(str(tmp_path / "*"), save_or_load=True, options=OPTIONS[index_type])
    meta = json.loads((tmp_path / "index_meta.json").read_text())
    assert meta["build"]["index_type"] == index_type and meta["factory"] == built.factory
    assert meta["trained_on"] == (len(vectors) if OPTIONS[index_type].needs_training else 0)
    forbid_shard_reads(monkeypatch)
    loaded = build_index(str(tmp_path / "*"), save_or_load=True, options=OPTIONS[index_type])
    assert (loaded.factory, len(loaded), list(loaded.all_ids)) == (built.factory, 3000, list(ids))
    for got, expected in zip(loaded.search(queries, 5), built.search(queries, 5)):
        np.testing.assert_array_equal(got, expected)


def test_other_build_options_rebuild(tmp_path, data):
    ids, vectors, queries = data
    write_shards(tmp_path, ids, vectors)
    pattern = str(tmp_path / "*")
    assert build_index(pattern, save_or_load=True, options=IndexOptions("ivf_flat", n_lists=20)).factory == "IVF20,Flat"
    assert build_index(pattern, save_or_load=True, options=IndexOptions("ivf_flat", n_lists=30)).factory == "IVF30,Flat"
    assert build_index(pattern, save_or_load=True, options=IndexOptions("ivf_sq8", n_lists=30)).factory == "IVF30,SQ8"
    assert build_index(pattern, save_or_load=True, options=IndexOptions("ivf_sq8", n_lists=30, seed=1)).trained_on
    assert json.loads((tmp_path / "index_meta.json").read_text())["build"]["seed"] == 1
    assert build_index(pattern, save_or_load=True).factory == "Flat"  # no options: flat, as before
    assert build_index(pattern, save_or_load=True, options=IndexOptions(hnsw_m=8)).factory == "HNSW8"
    # changed shards: rebuilt, not reused
    built = build_index(pattern, save_or_load=True)
    save_shard(tmp_path / "passages_01.npy", ids[1500:], [vectors[1500:] * 2])
    rebuilt = build_index(pattern, save_or_load=True)
    assert rebuilt.search(queries[:1], 1)[0][0, 0] > built.search(queries[:1], 1)[0][0, 0]


def test_search_options_apply_without_rebuild(tmp_path, data, monkeypatch):
    ids, vectors, queries = data
    _, truth = brute_force(vectors, queries, 10)
    write_shards(tmp_path, ids, vectors)
    pattern = str(tmp_path / "*")
    build_index(pattern, save_or_load=True, options=IndexOptions("ivf_flat", n_lists=40))
    forbid_shard_reads(monkeypatch)
    one = build_index(pattern, save_or_load=True, options=IndexOptions("ivf_flat", n_lists=40, n_probe=1))
    every = build_index(pattern, save_or_load=True, options=IndexOptions("ivf_flat", n_lists=40, n_probe=40))
    assert recall(one.search(queries, 10)[1], truth) < 0.5 and one.faiss.nprobe == 1
    assert recall(every.search(queries, 10)[1], truth) == 1.0 and every.faiss.nprobe == 40
    monkeypatch.undo()
    build_index(pattern, save_or_load=True, options=IndexOptions("hnsw", hnsw_m=8))
    forbid_shard_reads(monkeypatch)
    narrow = build_index(pattern, save_or_load=True, options=IndexOptions("hnsw", hnsw_m=8, ef_search=10))
    wide = build_index(pattern, save_or_load=True, options=IndexOptions("hnsw", hnsw_m=8, ef_search=300))
    narrow_recall = recall(narrow.search(queries, 10)[1], truth)
    assert narrow.faiss.hnsw.efSearch == 10 and recall(wide.search(queries, 10)[1], truth) > narrow_recall
    assert wide.faiss.hnsw.efSearch == 300


def clustered_shards(directory, n_shards=4, per_shard=500):
    """Shards ordered by cluster (shard i = cluster i), as embeddings sorted by topic would be; returns the centers."""
    rng = np.random.default_rng(1)
    centers = 10 * rng.standard_normal((n_shards, DIM)).astype(np.float32)
    for i, center in enumerate(centers):
        part = center + rng.standard_normal((per_shard, DIM)).astype(np.float32)
        save_shard(directory / f"passages_{i:02d}.npy", [f"{i}_{j}" for j in range(per_shard)], [part])
    return centers


def test_training_sample_spans_every_shard(tmp_path):
    centers = clustered_shards(tmp_path)
    files = shard_files(str(tmp_path / "*"))
    sample = training_sample(files, [500] * 4, 400, seed=0)
    nearest = np.argmin(((sample[:, None] - centers[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=4)
    assert counts.sum() == 400 and counts.min() >= 60  # ~100 from each shard, not the first shard's 400
    np.testing.assert_array_equal(training_sample(files, [500] * 4, 400, seed=0), sample)  # seeded
    assert not np.array_equal(training_sample(files, [500] * 4, 400, seed=1), sample)
    # an IVF index trained on it has lists in every cluster, though the first indexing batch holds shard 0 only
    index = build_index(str(tmp_path / "*"), indexing_batch_size=100, options=IndexOptions("ivf_flat", n_lists=8))
    lists = index.faiss.quantizer.reconstruct_n(0, 8)  # inner product: spherical k-means, so compare directions
    cosines = (lists / np.linalg.norm(lists, axis=1, keepdims=True)) @ (centers / np.linalg.norm(centers, axis=1)[:, None]).T
    assert (cosines.max(axis=0) > 0.9).all()
    assert index.trained_on == 2000 == IndexOptions("ivf_flat", n_lists=8).training_size(2000)


def test_training_size_follows_faiss_guidelines():
    assert IndexOptions("ivf_flat").lists(1_000_000) == 1000  # sqrt(n)
    assert IndexOptions("ivf_flat").lists(12_324) == 111 and IndexOptions("ivf_flat").lists(1000) == 25  # n / 39
    assert IndexOptions("ivf_flat").training_size(1_000_000) == 256_000  # 256 per list
    assert IndexOptions("ivf_flat").training_size(21_000_000) == 1_000_000  # capped at MAX_TRAIN
    assert IndexOptions("ivf_flat", n_lists=65536).training_size(21_000_000) == 39 * 65536  # FAISS's minimum wins
    assert IndexOptions("ivf_pq", n_lists=100, n_subquantizers=8).training_size(10**6) == 256 * 256  # PQ codebooks
    assert IndexOptions("sq8").training_size(10**6) == 256 * 256 and IndexOptions("sq8").training_size(500) == 500


def test_split_index_equals_single_index(tmp_path, data):
    ids, vectors, queries = data
    for part, (lo, hi) in enumerate([(0, 1000), (1000, 3000)]):
        write_shards(tmp_path / f"part{part}", ids[lo:hi], vectors[lo:hi])
    write_shards(tmp_path / "all", ids, vectors, n=3)
    single = build_index(str(tmp_path / "all" / "*"))
    scores, positions = single.search(queries, 10)
    # one process: faiss.IndexShards over the parts' indexes
    parts = [build_index(str(tmp_path / f"part{p}" / "*")) for p in range(2)]
    joined = Index.join(parts)
    joined_scores, joined_positions = joined.search(queries, 10)
    np.testing.assert_array_equal(joined_positions, positions)
    np.testing.assert_allclose(joined_scores, scores, rtol=1e-6)
    assert list(joined.all_ids) == list(ids)
    # several processes (as machines would): each searches its own part; their top-k are merged by faiss.ResultHeap
    np.save(tmp_path / "queries.npy", queries)
    worker = ("import sys, numpy as np; from smart.retrieval.index import build_index, IndexOptions; "
              "index = build_index(sys.argv[1] + '/*', options=IndexOptions('sq16')); "
              "scores, positions = index.search(np.load(sys.argv[2]), 10); "
              "labels = index.all_ids[positions].astype(np.int64); labels[positions < 0] = -1; "
              "np.savez(sys.argv[3], scores=scores, labels=labels)")
    runs = [subprocess.Popen([sys.executable, "-c", worker, str(tmp_path / f"part{p}"), str(tmp_path / "queries.npy"),
                              str(tmp_path / f"top{p}.npz")], cwd=REPO, stderr=subprocess.PIPE) for p in range(2)]
    assert all(run.wait(timeout=120) == 0 for run in runs), [run.stderr.read().decode()[-2000:] for run in runs]
    results = [np.load(tmp_path / f"top{p}.npz") for p in range(2)]
    merged_scores, merged_labels = merge_topk([(r["scores"], r["labels"]) for r in results], 10)
    assert recall(merged_labels, ids[positions].astype(np.int64)) >= 0.99  # sq16 codes: up to near-ties
    np.testing.assert_allclose(merged_scores, scores, atol=0.01)


def test_split_index_errors(tmp_path, data):
    ids, vectors, queries = data
    flat = Index(DIM)
    flat.add(ids, vectors)
    narrow = Index(16)
    narrow.add(ids, vectors[:, :16])
    with pytest.raises(InputError, match="index part 1 \\(16-d flat\\) differs from part 0 \\(32-d flat\\)"):
        Index.join([flat, narrow])
    with pytest.raises(InputError, match="index part 1 holds no vectors"):
        Index.join([flat, Index(DIM)])
    with pytest.raises(InputError, match="no index parts"):
        Index.join([])
    scores, positions = flat.search(queries, 5)
    with pytest.raises(InputError, match="top-k result 1: .* do not match 50 queries"):
        merge_topk([(scores, positions), (scores[:3], positions[:3])], 5)


@pytest.mark.parametrize("options, message", [
    (dict(n_subquantizers=8, hnsw_m=16), "not both"),
    (dict(index_type="ivf"), "--index_type ivf: unknown, choose one of flat, sq16, sq8"),
    (dict(index_type="flat", n_subquantizers=8), "--n_subquantizers applies to --index_type ivf_pq, not flat"),
    (dict(index_type="sq8", hnsw_m=8), "--hnsw_m applies to --index_type hnsw, not sq8"),
    (dict(index_type="flat", n_probe=4), "--n_probe applies to --index_type ivf_flat/ivf_sq16/ivf_sq8/ivf_pq, not flat"),
    (dict(hnsw_m=8, n_lists=10), "--n_lists applies to"),
    (dict(index_type="ivf_sq8", ef_search=64), "--ef_search applies to --index_type hnsw, not ivf_sq8"),
    (dict(index_type="ivf_flat", n_bits=4), "--n_bits applies to --index_type ivf_pq"),
    (dict(index_type="ivf_pq"), "ivf_pq needs --n_subquantizers"),
    (dict(index_type="hnsw"), "hnsw needs --hnsw_m"),
    (dict(index_type="ivf_flat", n_probe=0), "--n_probe must be at least 1"),
    (dict(index_type="ivf_pq", n_subquantizers=8, n_bits=20), "--n_bits at most 16"),
])
def test_bad_option_combinations(options, message):
    with pytest.raises(InputError, match=message):
        IndexOptions(**options)


def test_index_rejects_bad_options_and_dimensions(tmp_path, data):
    ids, vectors, queries = data
    with pytest.raises(InputError, match="must divide"):
        Index(DIM, IndexOptions(n_subquantizers=5))
    write_shards(tmp_path, ids[:100], vectors[:100])
    with pytest.raises(InputError, match="needs at least 256 vectors"):
        build_index(str(tmp_path / "*"), options=IndexOptions(n_subquantizers=8))
    with pytest.raises(InputError, match="--n_lists 10 needs at least 390 vectors"):
        build_index(str(tmp_path / "*"), options=IndexOptions("ivf_flat", n_lists=10))
    with pytest.raises(RuntimeError, match="call train"):
        Index(DIM, IndexOptions("sq8")).add(ids, vectors)
    index = Index(16)
    with pytest.raises(InputError, match="dimension 32 does not match the index dimension 16"):
        index.add(ids, vectors)
    with pytest.raises(InputError, match="query dimension 32"):
        index.search(queries, 3)


def test_shards_roundtrip_and_build_index(tmp_path, data):
    ids, vectors, queries = data
    write_shards(tmp_path, ids, vectors)
    assert [p.name for p in shard_files(str(tmp_path / "*"))] == ["passages_00.npy", "passages_01.npy"]
    shard_ids, shard = load_shard(tmp_path / "passages_01.npy")
    np.testing.assert_array_equal(shard, vectors[1500:])
    assert list(shard_ids) == list(ids[1500:])
    index = build_index(str(tmp_path / "*"), projection_size=32, indexing_batch_size=700)
    assert len(index) == 3000 and list(index.all_ids) == list(ids)
    np.testing.assert_allclose(index.search(queries, 5)[0], brute_force(vectors, queries, 5)[0], rtol=1e-5)


@pytest.mark.parametrize("index_type", ["flat", "ivf_sq8"])  # checked while adding, and while sizing a sample
def test_shard_errors(tmp_path, data, index_type):
    ids, vectors, _ = data
    options = IndexOptions(index_type)
    with pytest.raises(InputError, match="matches no embedding files"):
        shard_files(str(tmp_path / "nothing_*"))
    write_shards(tmp_path, ids, vectors)
    with pytest.raises(InputError, match="passages_00.npy: embeddings have dimension 32, not --projection_size 768"):
        build_index(str(tmp_path / "*"), projection_size=768, options=options)
    save_shard(tmp_path / "passages_02.npy", ids[:10], [vectors[:10, :16]])
    with pytest.raises(InputError, match="passages_02.npy: embeddings have dimension 16, but the shards before it have 32"):
        build_index(str(tmp_path / "*"), options=options)
    save_shard(tmp_path / "passages_02.npy", [], [vectors[:0]])
    with pytest.raises(InputError, match="passages_02.npy: the shard holds no embeddings"):
        build_index(str(tmp_path / "*"), options=options)
    os.remove(ids_path(tmp_path / "passages_01.npy"))
    with pytest.raises(InputError, match="ids file passages_01.ids.npy is missing"):
        build_index(str(tmp_path / "*"), options=options)
    save_shard(tmp_path / "passages_01.npy", ids[:3], [vectors[:5]])
    with pytest.raises(InputError, match="3 ids but 5 embeddings"):
        load_shard(tmp_path / "passages_01.npy")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_contriever_pickle_shard_is_accepted(tmp_path, data, protocol):
    ids, vectors, _ = data
    path = tmp_path / "passages_00"
    path.write_bytes(pickle.dumps(([str(i) for i in ids[:100]], vectors[:100]), protocol=protocol))
    loaded_ids, loaded = load_contriever_shard(path)
    assert list(loaded_ids) == list(ids[:100])
    np.testing.assert_array_equal(loaded, vectors[:100])
    assert build_index(str(tmp_path / "passages_*")).dim == 32
    assert build_index(str(tmp_path / "passages_*"), options=IndexOptions("sq8")).trained_on == 100


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "passages_00"
    path.write_bytes(pickle.dumps((["1"], RunsCode(marker))))
    with pytest.raises(InputError, match="refused to load 'posix.system'|refused to load 'os.system'"):
        load_contriever_shard(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"ids": ["1"]}))
    with pytest.raises(InputError, match="expected a pickled \\(ids, embeddings\\) pair"):
        load_contriever_shard(path)
    path.write_bytes(pickle.dumps((["1"], np.zeros((1, 4), dtype=object))))
    with pytest.raises(InputError, match="2-D float array"):
        load_contriever_shard(path)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(InputError, match=str(path)):
        load_contriever_shard(path)
