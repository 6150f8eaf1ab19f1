"""FAISS indexes over passage embeddings, and the embedding shard files they are built from.

Shard files (what a `--passages_embeddings "dir/*"` glob matches):
- ours: `passages_00.npy` (float32 [n, d]) with its ids in `passages_00.ids.npy` (str [n]); never pickle;
- Contriever's official `wikipedia_embeddings/passages_*`: pickles of (ids, float array), read through a
  restricted unpickler that only rebuilds numpy arrays, lists/tuples and str/int, and refuses anything else.
Index types (IndexOptions, all inner product): exact scans over float32 (flat, the default), float16 (sq16) or 8-bit
(sq8) codes; the same codes in IVF lists (ivf_flat, ivf_sq16, ivf_sq8); IVF-PQ (ivf_pq, `n_subquantizers > 0` as
Contriever's flag); HNSW (`hnsw_m > 0`). Indexes over parts of a corpus are searched together with `Index.join`
(faiss.IndexShards, one process) or `merge_topk` (faiss.ResultHeap, the top-k of several processes or machines).
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import logging
import os
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

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
    if not len(ids):
        raise InputError(f"{path}: the shard holds no embeddings")
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


def load_checked_shard(path: Path, dim: int | None, projection_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`load_shard`, checking the embedding dimension against --projection_size and the shards before it (`dim`)."""
    ids, embeddings = load_shard(path)
    width = embeddings.shape[1]
    if projection_size and width != projection_size:
        raise InputError(f"{path}: embeddings have dimension {width}, not --projection_size {projection_size}")
    if dim is not None and width != dim:
        raise InputError(f"{path}: embeddings have dimension {width}, but the shards before it have {dim}")
    return ids, embeddings


def training_sample(files: Sequence[Path], sizes: Sequence[int], size: int, seed: int = 0) -> np.ndarray:
    """`size` vectors drawn uniformly without replacement from all shards together (seeded), read shard by shard."""
    picks = np.sort(np.random.default_rng(seed).choice(sum(sizes), size, replace=False))
    starts = np.cumsum([0, *sizes])
    bounds = np.searchsorted(picks, starts)
    return np.concatenate([np.asarray(load_shard(path)[1][picks[lo:hi] - start], dtype=np.float32)
                           for path, start, lo, hi in zip(files, starts, bounds, bounds[1:]) if hi > lo])


# ---------------------------------------------------------------- index

INDEX_TYPES = ("flat", "sq16", "sq8", "ivf_flat", "ivf_sq16", "ivf_sq8", "ivf_pq", "hnsw")
IVF_TYPES = tuple(t for t in INDEX_TYPES if t.startswith("ivf_"))
CODECS = {"flat": "Flat", "sq16": "SQfp16", "sq8": "SQ8"}  # how flat and IVF lists store each vector
DEFAULT_N_PROBE, DEFAULT_EF_SEARCH = 32, 128
# Training sample: FAISS warns below 39 points per centroid and its k-means uses at most 256 (it subsamples beyond);
# we take 256 per centroid, capped at 1M vectors (3 GB at 768-d) unless 39 per centroid need more.
MIN_TRAIN_PER_CENTROID, TRAIN_PER_CENTROID, MAX_TRAIN = 39, 256, 1_000_000


@dataclass(frozen=True)
class IndexOptions:
    """How to index (the build options, saved with the index: others rebuild it) and how to search (n_probe,
    ef_search: applied to a loaded index as they are). index_type None follows Contriever's flags: ivf_pq when
    n_subquantizers > 0, hnsw when hnsw_m > 0, else flat."""

    index_type: str | None = None
    n_lists: int = 0  # IVF lists; 0 = sqrt(n), at most n / 39
    n_subquantizers: int = 0  # IVF-PQ bytes per vector (with n_bits 8)
    n_bits: int = 8
    hnsw_m: int = 0
    seed: int = 0  # of the training sample
    n_probe: int | None = None  # IVF lists searched per query (default 32)
    ef_search: int | None = None  # HNSW candidates per query (default 128, at least k)

    def __post_init__(self) -> None:
        if self.index_type is None and self.n_subquantizers > 0 and self.hnsw_m > 0:
            raise InputError("choose one of --n_subquantizers (IVF-PQ) and --hnsw_m (HNSW), not both")
        kind = self.index_type or ("ivf_pq" if self.n_subquantizers > 0 else "hnsw" if self.hnsw_m > 0 else "flat")
        object.__setattr__(self, "index_type", kind)
        if kind not in INDEX_TYPES:
            raise InputError(f"--index_type {kind}: unknown, choose one of {', '.join(INDEX_TYPES)}")
        rules = [  # flag, its value, the value meaning "not given", the smallest allowed, the types it applies to
            ("--n_lists", self.n_lists, 0, 1, IVF_TYPES), ("--n_probe", self.n_probe, None, 1, IVF_TYPES),
            ("--n_subquantizers", self.n_subquantizers, 0, 1, ("ivf_pq",)), ("--n_bits", self.n_bits, 8, 1, ("ivf_pq",)),
            ("--hnsw_m", self.hnsw_m, 0, 2, ("hnsw",)), ("--ef_search", self.ef_search, None, 1, ("hnsw",)),
        ]
        for flag, value, unset, smallest, types in rules:
            if value != unset and kind not in types:
                raise InputError(f"{flag} applies to --index_type {'/'.join(types)}, not {kind}")
            if value != unset and value < smallest:
                raise InputError(f"{flag} must be at least {smallest}, got {value}")
        if kind == "ivf_pq" and not (self.n_subquantizers and self.n_bits <= 16):
            raise InputError("--index_type ivf_pq needs --n_subquantizers (e.g. 64 for 768-d) and --n_bits at most 16")
        if kind == "hnsw" and not self.hnsw_m:
            raise InputError("--index_type hnsw needs --hnsw_m (e.g. 32)")

    @property
    def is_ivf(self) -> bool:
        return self.index_type in IVF_TYPES

    @property
    def needs_training(self) -> bool:
        return self.is_ivf or self.index_type == "sq8"

    def build_options(self) -> dict:
        """What the saved index records; a reload asking for other values rebuilds."""
        return {k: v for k, v in asdict(self).items() if k not in ("n_probe", "ef_search")}

    def lists(self, n_total: int) -> int:
        """IVF lists for `n_total` vectors: --n_lists, else sqrt(n), keeping 39 vectors per list to train on."""
        if not self.n_lists:
            return max(1, min(int(np.sqrt(n_total)), n_total // MIN_TRAIN_PER_CENTROID))
        if n_total < MIN_TRAIN_PER_CENTROID * self.n_lists:
            raise InputError(f"--n_lists {self.n_lists} needs at least {MIN_TRAIN_PER_CENTROID * self.n_lists} vectors "
                             f"({MIN_TRAIN_PER_CENTROID} per list) to train, got {n_total}")
        return self.n_lists

    def factory(self, n_total: int) -> str:
        """The faiss.index_factory string, e.g. 'IVF1000,SQ8' ('HNSW32', 'SQfp16', 'IVF4582,PQ64x8np')."""
        kind = self.index_type
        if kind == "hnsw":
            return f"HNSW{self.hnsw_m}"
        if kind == "ivf_pq":  # np: no polysemous training (only Hamming-filtered search, not used here, needs it)
            return f"IVF{self.lists(n_total)},PQ{self.n_subquantizers}x{self.n_bits}np"
        return f"IVF{self.lists(n_total)},{CODECS[kind[4:]]}" if self.is_ivf else CODECS[kind]

    def training_size(self, n_total: int) -> int:
        """Vectors to train on: 256 per centroid of the largest codebook (IVF lists, 2^n_bits PQ codes, SQ8's 256
        levels), at most MAX_TRAIN unless 39 per centroid need more, at most `n_total`."""
        if self.index_type == "ivf_pq" and n_total < 2 ** self.n_bits:
            raise InputError(f"IVF-PQ with --n_bits {self.n_bits} needs at least {2 ** self.n_bits} vectors to train, "
                             f"got {n_total}: use another --index_type (e.g. flat)")
        centroids = max(self.lists(n_total) if self.is_ivf else 1,
                        2 ** self.n_bits if self.index_type == "ivf_pq" else 256 if self.index_type.endswith("sq8") else 1)
        return min(n_total, max(MIN_TRAIN_PER_CENTROID * centroids, min(TRAIN_PER_CENTROID * centroids, MAX_TRAIN)))


class Index:
    """A FAISS inner-product index (see IndexOptions) plus the passage id of each vector."""

    def __init__(self, dim: int, options: IndexOptions | None = None):
        self.dim, self.options = dim, options or IndexOptions()
        if self.options.index_type == "ivf_pq" and dim % self.options.n_subquantizers:
            raise InputError(f"--n_subquantizers {self.options.n_subquantizers} must divide the embedding dimension {dim}")
        self.faiss = None
        self.factory, self.trained_on = "", 0
        self.ids: list[np.ndarray] = []

    def _create(self, n_total: int) -> None:
        import faiss

        self.factory = self.options.factory(n_total)
        self.faiss = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)

    def train(self, sample: np.ndarray, n_total: int) -> None:
        """Create the FAISS index for `n_total` vectors and train it on `sample` (see `training_sample`)."""
        self._create(n_total)
        started = time.time()
        self.faiss.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.trained_on = len(sample)
        log.info("trained %s on %d vectors in %.1f s", self.factory, len(sample), time.time() - started)

    def add(self, ids: np.ndarray, embeddings: np.ndarray, batch_size: int = 1_000_000) -> None:
        if embeddings.shape[1] != self.dim:
            raise InputError(f"embedding dimension {embeddings.shape[1]} does not match the index dimension {self.dim}"
                             " (--projection_size, or embeddings made by another encoder)")
        if self.faiss is None:
            if self.options.needs_training:
                raise RuntimeError(f"{self.options.index_type} is trained before vectors are added: call train() "
                                   "(build_index does)")
            self._create(len(embeddings))
        for start in range(0, len(embeddings), batch_size):
            self.faiss.add(np.ascontiguousarray(embeddings[start : start + batch_size], dtype=np.float32))
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
        import faiss

        if queries.shape[1] != self.dim:
            raise InputError(f"query dimension {queries.shape[1]} does not match the index dimension {self.dim}: "
                             "the passages were embedded with another encoder")
        if self.options.is_ivf:
            faiss.ParameterSpace().set_index_parameter(self.faiss, "nprobe", self.options.n_probe or DEFAULT_N_PROBE)
        elif self.options.index_type == "hnsw":
            faiss.ParameterSpace().set_index_parameter(self.faiss, "efSearch",
                                                       max(self.options.ef_search or DEFAULT_EF_SEARCH, k))
        return self.faiss.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    @classmethod
    def join(cls, parts: Sequence["Index"]) -> "Index":
        """One index over `parts` built alike (e.g. each from its own shard folder) through faiss.IndexShards;
        positions run through the parts in order, as if their shards had been indexed together."""
        import faiss

        if not parts:
            raise InputError("no index parts to join")
        first = parts[0]
        for number, part in enumerate(parts):
            if len(part) == 0:
                raise InputError(f"index part {number} holds no vectors")
            if (part.dim, part.options) != (first.dim, first.options):
                raise InputError(f"index part {number} ({part.dim}-d {part.options.index_type}) differs from part 0 "
                                 f"({first.dim}-d {first.options.index_type}): join parts built with the same options")
        joined = cls(first.dim, first.options)
        joined.factory = f"IndexShards({len(parts)} x {first.factory})"
        joined.faiss = faiss.IndexShards(first.dim, True, True)  # threaded; part i's positions follow parts < i
        for part in parts:
            joined.faiss.add_shard(part.faiss)
        joined.ids = [part.all_ids for part in parts]
        return joined

    def save(self, directory: str | os.PathLike, fingerprint: str) -> None:
        import faiss

        directory = Path(directory)
        with atomic_write(directory / INDEX_FILE, "wb") as f:
            f.write(faiss.serialize_index(self.faiss).tobytes())
        with atomic_write(directory / INDEX_IDS_FILE, "wb") as f:
            np.save(f, self.all_ids)
        meta = dict(fingerprint=fingerprint, dim=self.dim, factory=self.factory, trained_on=self.trained_on,
                    build=self.options.build_options())
        with atomic_write(directory / INDEX_META_FILE) as f:
            json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, directory: str | os.PathLike, fingerprint: str, options: IndexOptions) -> "Index | None":
        """The saved index in `directory` if it was built from the same shards with the same build options (its
        search options are `options`'), else None."""
        import faiss

        directory = Path(directory)
        try:
            meta = json.loads((directory / INDEX_META_FILE).read_text())
            if meta.get("fingerprint") != fingerprint or meta.get("build") != options.build_options():
                log.info("saved index in %s was built from other shards or options: rebuilding", directory)
                return None
            data = np.fromfile(directory / INDEX_FILE, dtype=np.uint8)
            ids = np.load(directory / INDEX_IDS_FILE, allow_pickle=False)
        except (OSError, ValueError, KeyError):
            return None
        index = cls(meta["dim"], options)
        index.faiss = faiss.deserialize_index(data)
        index.ids, index.factory, index.trained_on = [ids], meta["factory"], meta["trained_on"]
        return index


def merge_topk(results: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best k of several top-k lists for the same queries: (scores [q, k_i], int labels [q, k_i], -1 = none) each,
    as searched by separate processes or machines over parts of the corpus; merged by faiss.ResultHeap."""
    import faiss

    if not results:
        raise InputError("no top-k results to merge")
    n_queries = len(results[0][0])
    heap = faiss.ResultHeap(n_queries, k, keep_max=True)  # inner product: higher is better
    for number, (scores, labels) in enumerate(results):
        if np.shape(scores) != np.shape(labels) or len(scores) != n_queries:
            raise InputError(f"top-k result {number}: scores {np.shape(scores)} and labels {np.shape(labels)} do not "
                             f"match {n_queries} queries")
        heap.add_result(scores, labels)
    heap.finalize()
    return heap.D, heap.I


def shards_fingerprint(files: list[Path]) -> str:
    """Identifies a set of shard files by name, size and modification time."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def build_index(pattern: str, projection_size: int | None = None, indexing_batch_size: int = 1_000_000,
                save_or_load: bool = False, options: IndexOptions | None = None) -> Index:
    """Index every shard matching `pattern` (optionally saved beside them as index.faiss and reloaded next time).

    A trained index (sq8, ivf_*) is trained first on `training_sample` of all shards. That reads each .npy shard's
    header and the sampled rows; Contriever's pickles are read whole, so they are read three times.
    """
    options = options or IndexOptions()
    files = shard_files(pattern)
    fingerprint = shards_fingerprint(files)
    directory = files[0].parent
    if save_or_load and (index := Index.load(directory, fingerprint, options)) is not None:
        if projection_size and index.dim != projection_size:
            raise InputError(f"saved index has dimension {index.dim}, not --projection_size {projection_size}")
        log.info("loaded index from %s (%d vectors)", directory, len(index))
        return index
    started = time.time()
    dim = index = None
    if options.needs_training:
        sizes = []
        for path in files:
            embeddings = load_checked_shard(path, dim, projection_size)[1]
            dim = embeddings.shape[1]
            sizes.append(len(embeddings))
        index = Index(dim, options)
        n_total = sum(sizes)
        index.train(training_sample(files, sizes, options.training_size(n_total), options.seed), n_total)
    for path in files:
        ids, embeddings = load_checked_shard(path, dim, projection_size)
        log.info("loaded %s: %d x %d", path, *embeddings.shape)
        if index is None:
            dim, index = embeddings.shape[1], Index(embeddings.shape[1], options)
        index.add(ids, embeddings, batch_size=indexing_batch_size)
    log.info("indexed %d vectors in %.1f s", len(index), time.time() - started)
    if save_or_load:
        index.save(directory, fingerprint)
    return index
