"""FAISS indexes over passage embeddings, and the embedding shard files they are built from.

Shard files (what a `--passages_embeddings "dir/*"` glob matches):
- ours: `passages_00.npy` (float32 [n, d]) with its ids in `passages_00.ids.npy` (str [n]); never pickle;
- Contriever's official `wikipedia_embeddings/passages_*`: pickles of (ids, float array), read through a
  restricted unpickler that only rebuilds numpy arrays, lists/tuples and str/int, and refuses anything else.
Index types: exact inner product (flat, default), IVF-PQ (`n_subquantizers > 0`, as Contriever's flag), HNSW.
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from smart.io import InputError, atomic_write

log = logging.getLogger(__name__)
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise

IDS_SUFFIX = ".ids.npy"
INDEX_FILE, INDEX_IDS_FILE, INDEX_META_FILE = "index.faiss", "index_ids.npy", "index_meta.json"


# ---------------------------------------------------------------- shard files


class _ShardUnpickler(pickle.Unpickler):
    """Admits only what `pickle.dump((ids, numpy_array))` needs; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load '{module}.{name}': only (ids, numpy array) payloads are allowed")


def load_contriever_shard(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(ids as str array, float32 embeddings) from one of Contriever's `wikipedia_embeddings/*` pickles, safely."""
    try:
        with open(path, "rb") as f:
            payload = _ShardUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise InputError(f"{path}: not a Contriever embeddings shard ({e})") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise InputError(f"{path}: unreadable embeddings shard ({type(e).__name__}: {e})") from None
    if not (isinstance(payload, (tuple, list)) and len(payload) == 2):
        raise InputError(f"{path}: expected a pickled (ids, embeddings) pair, got {type(payload).__name__}")
    ids, embeddings = payload
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, (str, int)) for i in ids):
        raise InputError(f"{path}: ids must be a list of str/int")
    return _checked(path, np.array([str(i) for i in ids]), embeddings)


def _checked(path, ids: np.ndarray, embeddings) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2 or embeddings.dtype.kind != "f":
        shape = getattr(embeddings, "shape", None)
        raise InputError(f"{path}: embeddings must be a 2-D float array, got {type(embeddings).__name__} {shape}")
    if len(ids) != len(embeddings):
        raise InputError(f"{path}: {len(ids)} ids but {len(embeddings)} embeddings")
    return ids, embeddings


def save_shard(path: str | os.PathLike, ids, chunks: list[np.ndarray]) -> None:
    """Write `path` (.npy float32, the chunks stacked, streamed) then its ids file, each atomically.

    A shard counts as complete only once its ids file exists, so a kill never leaves a loadable partial shard.
    """
    path = Path(path)
    n, dim = sum(len(c) for c in chunks), chunks[0].shape[1]
    with atomic_write(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)})
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
    with atomic_write(ids_path(path), "wb") as f:
        np.save(f, np.asarray(ids, dtype=str))


def ids_path(shard: str | os.PathLike) -> Path:
    shard = Path(shard)
    return shard.with_name(shard.name[: -len(".npy")] + IDS_SUFFIX)


def load_shard(path: str | os.PathLike, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ids, embeddings) of one shard file of either format; `.npy` embeddings are memory-mapped."""
    path = Path(path)
    if path.suffix != ".npy":
        return load_contriever_shard(path)
    if not ids_path(path).exists():
        raise InputError(f"{path}: its ids file {ids_path(path).name} is missing (an unfinished shard: rerun it)")
    try:
        embeddings = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        ids = np.load(ids_path(path), allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path}: unreadable .npy shard ({e})") from None
    return _checked(path, ids.astype(str), embeddings)


def shard_files(pattern: str) -> list[Path]:
    """Sorted embedding shard files matching a glob (ids companions and saved index files excluded); InputError if none."""
    index_files = {INDEX_FILE, INDEX_IDS_FILE, INDEX_META_FILE}
    files = sorted(Path(p) for p in globlib.glob(pattern)
                   if Path(p).is_file() and not p.endswith(IDS_SUFFIX) and Path(p).name not in index_files)
    if not files:
        raise InputError(f"--passages_embeddings '{pattern}' matches no embedding files")
    return files


def iter_shards(pattern: str) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
    for path in shard_files(pattern):
        ids, embeddings = load_shard(path)
        log.info("loaded %s: %d x %d", path, *embeddings.shape)
        yield path, ids, embeddings


# ---------------------------------------------------------------- index


def index_kind(n_subquantizers: int = 0, hnsw_m: int = 0) -> str:
    if n_subquantizers > 0 and hnsw_m > 0:
        raise InputError("choose one of --n_subquantizers (IVF-PQ) and --hnsw_m (HNSW), not both")
    return "ivfpq" if n_subquantizers > 0 else "hnsw" if hnsw_m > 0 else "flat"


class Index:
    """A FAISS inner-product index plus the passage id of each vector."""

    def __init__(self, dim: int, n_subquantizers: int = 0, n_bits: int = 8, n_lists: int = 0, hnsw_m: int = 0,
                 hnsw_ef_search: int = 128, n_probe: int = 32):
        import faiss

        self.dim = dim
        self.kind = index_kind(n_subquantizers, hnsw_m)
        self.options = dict(n_subquantizers=n_subquantizers, n_bits=n_bits, n_lists=n_lists, hnsw_m=hnsw_m)
        self.hnsw_ef_search, self.n_probe = hnsw_ef_search, n_probe
        self.faiss = None
        if self.kind == "flat":
            self.faiss = faiss.IndexFlatIP(dim)
        elif self.kind == "hnsw":
            self.faiss = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        elif dim % n_subquantizers:
            raise InputError(f"--n_subquantizers {n_subquantizers} must divide the embedding dimension {dim}")
        self.ids: list[np.ndarray] = []

    def _train(self, vectors: np.ndarray) -> None:
        """IVF-PQ needs a training sample: the first indexing batch (n_lists defaults to ~sqrt(n))."""
        import faiss

        if len(vectors) < 2 ** self.options["n_bits"]:
            raise InputError(f"IVF-PQ with --n_bits {self.options['n_bits']} needs at least {2 ** self.options['n_bits']} "
                             f"vectors to train, got {len(vectors)}: use the flat index (--n_subquantizers 0)")
        n_lists = self.options["n_lists"] or max(1, min(int(np.sqrt(len(vectors))), len(vectors) // 39))
        quantizer = faiss.IndexFlatIP(self.dim)
        self.faiss = faiss.IndexIVFPQ(quantizer, self.dim, n_lists, self.options["n_subquantizers"],
                                      self.options["n_bits"], faiss.METRIC_INNER_PRODUCT)
        self.faiss.train(vectors)

    def add(self, ids: np.ndarray, embeddings: np.ndarray, batch_size: int = 1_000_000) -> None:
        if embeddings.shape[1] != self.dim:
            raise InputError(f"embedding dimension {embeddings.shape[1]} does not match the index dimension {self.dim}"
                             " (--projection_size, or embeddings made by another encoder)")
        for start in range(0, len(embeddings), batch_size):
            batch = np.ascontiguousarray(embeddings[start : start + batch_size], dtype=np.float32)
            if self.faiss is None:
                self._train(batch)
            self.faiss.add(batch)
        self.ids.append(np.asarray(ids, dtype=str))

    @property
    def all_ids(self) -> np.ndarray:
        if len(self.ids) != 1:
            self.ids = [np.concatenate(self.ids) if self.ids else np.array([], dtype=str)]
        return self.ids[0]

    def __len__(self) -> int:
        return 0 if self.faiss is None else int(self.faiss.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k], vector positions [q, k], -1 where fewer than k exist); position -> `all_ids`."""
        if queries.shape[1] != self.dim:
            raise InputError(f"query dimension {queries.shape[1]} does not match the index dimension {self.dim}: "
                             "the passages were embedded with another encoder")
        if self.kind == "hnsw":
            self.faiss.hnsw.efSearch = max(self.hnsw_ef_search, k)
        elif self.kind == "ivfpq":
            self.faiss.nprobe = self.n_probe
        return self.faiss.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, directory: str | os.PathLike, fingerprint: str) -> None:
        import faiss

        directory = Path(directory)
        with atomic_write(directory / INDEX_FILE, "wb") as f:
            f.write(faiss.serialize_index(self.faiss).tobytes())
        with atomic_write(directory / INDEX_IDS_FILE, "wb") as f:
            np.save(f, self.all_ids)
        meta = dict(fingerprint=fingerprint, dim=self.dim, kind=self.kind, **self.options)
        with atomic_write(directory / INDEX_META_FILE) as f:
            json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, directory: str | os.PathLike, fingerprint: str, **options) -> "Index | None":
        """The saved index in `directory` if it was built from the same shards with the same options, else None."""
        import faiss

        directory = Path(directory)
        try:
            meta = json.loads((directory / INDEX_META_FILE).read_text())
            data = np.fromfile(directory / INDEX_FILE, dtype=np.uint8)
            ids = np.load(directory / INDEX_IDS_FILE, allow_pickle=False)
        except (OSError, ValueError):
            return None
        index = cls(meta["dim"], **options)
        if meta["fingerprint"] != fingerprint or meta["kind"] != index.kind or any(
            meta.get(k) != v for k, v in index.options.items()
        ):
            log.info("saved index in %s was built from other shards or options: rebuilding", directory)
            return None
        index.faiss = faiss.deserialize_index(data)
        index.ids = [ids]
        return index


def shards_fingerprint(files: list[Path]) -> str:
    """Identifies a set of shard files by name, size and modification time."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def build_index(pattern: str, projection_size: int | None = None, indexing_batch_size: int = 1_000_000,
                save_or_load: bool = False, **options) -> Index:
    """Index every shard matching `pattern` (optionally saved beside them as index.faiss and reloaded next time)."""
    files = shard_files(pattern)
    fingerprint = shards_fingerprint(files)
    directory = files[0].parent
    if save_or_load:
        index = Index.load(directory, fingerprint, **options)
        if index is not None:
            if projection_size and index.dim != projection_size:
                raise InputError(f"saved index has dimension {index.dim}, not --projection_size {projection_size}")
            log.info("loaded index from %s (%d vectors)", directory, len(index))
            return index
    index = None
    started = time.time()
    for path, ids, embeddings in iter_shards(pattern):
        if index is None:
            dim = embeddings.shape[1]
            if projection_size and dim != projection_size:
                raise InputError(f"{path}: embeddings have dimension {dim}, not --projection_size {projection_size}")
            index = Index(dim, **options)
        try:
            index.add(ids, embeddings, batch_size=indexing_batch_size)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
    log.info("indexed %d vectors in %.1f s", len(index), time.time() - started)
    if save_or_load:
        index.save(directory, fingerprint)
    return index
