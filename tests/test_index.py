"""FAISS indexes against brute force, shard files, and the restricted unpickler for Contriever's shards."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from smart.index import Index, build_index, ids_path, load_contriever_shard, load_shard, save_shard, shard_files
from smart.io import InputError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((50, 32)).astype(np.float32)
    ids = np.array([str(i + 1) for i in range(len(vectors))])
    return ids, vectors, queries


def brute_force(vectors, queries, k):
    scores = queries @ vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), top


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def test_flat_equals_brute_force(data):
    ids, vectors, queries = data
    index = Index(32)
    index.add(ids[:1000], vectors[:1000], batch_size=300)
    index.add(ids[1000:], vectors[1000:], batch_size=300)
    scores, positions = index.search(queries, 10)
    ref_scores, ref_positions = brute_force(vectors, queries, 10)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert recall(positions, ref_positions) == 1.0
    assert list(index.all_ids[positions[0]]) == list(ids[positions[0]])


def test_hnsw_and_ivfpq_recall(data):
    ids, vectors, queries = data
    _, truth = brute_force(vectors, queries, 10)
    hnsw = Index(32, hnsw_m=16)
    hnsw.add(ids, vectors)
    assert hnsw.kind == "hnsw" and recall(hnsw.search(queries, 10)[1], truth) > 0.9
    ivfpq = Index(32, n_subquantizers=8, n_bits=6, n_probe=64)
    ivfpq.add(ids, vectors)
    found = ivfpq.search(queries, 10)[1]
    assert ivfpq.kind == "ivfpq" and recall(found, truth) > 0.3
    assert recall(found, truth) > 10 * 10 / len(vectors)  # far above chance


def test_index_rejects_bad_options_and_dimensions(data):
    ids, vectors, queries = data
    with pytest.raises(InputError, match="not both"):
        Index(32, n_subquantizers=8, hnsw_m=16)
    with pytest.raises(InputError, match="must divide"):
        Index(32, n_subquantizers=5)
    with pytest.raises(InputError, match="needs at least 256 vectors"):
        Index(32, n_subquantizers=8).add(ids[:100], vectors[:100])
    index = Index(16)
    with pytest.raises(InputError, match="dimension 32 does not match the index dimension 16"):
        index.add(ids, vectors)
    with pytest.raises(InputError, match="query dimension 32"):
        index.search(queries, 3)


def write_shards(directory, ids, vectors, n=2):
    for i, (part_ids, part) in enumerate(zip(np.array_split(ids, n), np.array_split(vectors, n))):
        save_shard(directory / f"passages_{i:02d}.npy", part_ids, [part[: len(part) // 2], part[len(part) // 2 :]])


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


def test_save_or_load_index(tmp_path, data):
    ids, vectors, queries = data
    write_shards(tmp_path, ids, vectors)
    built = build_index(str(tmp_path / "*"), save_or_load=True, hnsw_m=8)
    assert (tmp_path / "index.faiss").exists()
    loaded = build_index(str(tmp_path / "*"), save_or_load=True, hnsw_m=8)
    assert loaded.kind == "hnsw" and len(loaded) == 3000
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], built.search(queries, 5)[1])
    assert list(loaded.all_ids) == list(ids)
    # other options or changed shards: rebuilt, not reused
    assert build_index(str(tmp_path / "*"), save_or_load=True).kind == "flat"
    save_shard(tmp_path / "passages_01.npy", ids[1500:], [vectors[1500:] * 2])
    rebuilt = build_index(str(tmp_path / "*"), save_or_load=True)
    assert rebuilt.search(queries[:1], 1)[0][0, 0] > built.search(queries[:1], 1)[0][0, 0]


def test_shard_errors(tmp_path, data):
    ids, vectors, _ = data
    with pytest.raises(InputError, match="matches no embedding files"):
        shard_files(str(tmp_path / "nothing_*"))
    write_shards(tmp_path, ids, vectors)
    with pytest.raises(InputError, match="not --projection_size 768"):
        build_index(str(tmp_path / "*"), projection_size=768)
    os.remove(ids_path(tmp_path / "passages_01.npy"))
    with pytest.raises(InputError, match="ids file passages_01.ids.npy is missing"):
        build_index(str(tmp_path / "*"))
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
