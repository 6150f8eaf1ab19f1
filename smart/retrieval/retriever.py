"""Retrieval: embed a passage TSV into shard files (resumable), then encoder + FAISS index + passages -> ctxs."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from smart import defaults
from smart.io import InputError, atomic_write, require, where
from smart.retrieval.encoder import Encoder, default_device, prepare_text, resolve_dtype
from smart.retrieval.index import Index, IndexOptions, build_index, ids_path, save_shard
from smart.retrieval.passages import PassageStore

log = logging.getLogger(__name__)


@dataclass
class TextOptions:
    """How passages and queries become encoder input (Contriever's generate_passage_embeddings flags)."""

    no_title: bool = False
    lowercase: bool = False
    normalize_text: bool = False


def shard_range(n: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """Rows [start, end) of shard `shard_id`: equal slices, the last one takes the remainder (as Contriever)."""
    if not 0 <= shard_id < num_shards:
        raise InputError(f"--shard_id {shard_id} must be in [0, --num_shards {num_shards})")
    size = n // num_shards
    return shard_id * size, (n if shard_id == num_shards - 1 else (shard_id + 1) * size)


def _file_stamp(path: Path, hash_below: int = 0) -> str:
    """Size and mtime; or, for files smaller than `hash_below` bytes, size and content hash (so a file rewritten
    with the same content, like a regenerated corpus TSV, keeps its stamp)."""
    st = path.stat()
    if st.st_size < hash_below:
        return f"{path.resolve()}:{st.st_size}:sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _model_stamp(model: str) -> str:
    """A local model folder is identified by its files' sizes and times; a hub name by itself."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    return ";".join(_file_stamp(p) for p in sorted(folder.iterdir()) if p.is_file())


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """An advisory lock (flock) held for the block; released by the OS if the process dies."""
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process holding %s", lock_path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def embed_passages(model_name_or_path: str, passages: str, output_dir: str, shard_id: int = 0, num_shards: int = 1,
                   batch_size: int = 64, passage_maxlength: int = 256, text: TextOptions | None = None,
                   chunk_size: int = 2000, prefix: str = "passages", device: str | None = None,
                   dtype: str = "auto", progress: bool = True) -> Path:
    """Embed one shard of a passage TSV into `<output_dir>/<prefix>_<shard>.npy` (+ `.ids.npy`); returns its path.

    Resumable: finished chunks of `chunk_size` passages are kept in a hidden `.<prefix>_<shard>.partial/` folder and
    a rerun continues after the last one. A rerun with unchanged inputs (model, TSV, shard, text options) is a no-op.
    """
    text = text or TextOptions()
    store = PassageStore(passages)
    start, end = shard_range(len(store), shard_id, num_shards)
    if start >= end:
        raise InputError(f"{passages}: shard {shard_id} of {num_shards} holds no passages ({len(store)} in all)")
    out_dir = Path(output_dir)
    out = out_dir / f"{prefix}_{shard_id:02d}.npy"
    device = device or default_device()
    dtype = resolve_dtype(dtype, device)
    config = dict(model=_model_stamp(model_name_or_path), passages=_file_stamp(store.path, hash_below=256 * 2**20),
                  shard_id=shard_id, num_shards=num_shards, passage_maxlength=passage_maxlength, dtype=dtype,
                  chunk_size=chunk_size, **asdict(text))
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir / f".{out.stem}.lock"):  # another process embedding the same shard: wait, then reuse
        done_meta = out_dir / f".{out.stem}.meta.json"
        if out.exists() and ids_path(out).exists() and done_meta.exists() and json.loads(done_meta.read_text()) == config:
            log.info("%s is up to date", out)
            return out

        for stale in (ids_path(out), out, done_meta):  # ids first: without them a shard never loads
            stale.unlink(missing_ok=True)
        partial = out_dir / f".{out.stem}.partial"
        if partial.exists() and (not (partial / "meta.json").exists()
                                 or json.loads((partial / "meta.json").read_text()) != config):
            log.info("inputs changed since %s was started: starting over", partial)
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        with atomic_write(partial / "meta.json") as f:
            json.dump(config, f)

        chunks = [(partial / f"chunk_{number:06d}.npy", lo, min(lo + chunk_size, end))
                  for number, lo in enumerate(range(start, end, chunk_size))]
        todo = [c for c in chunks if not c[0].exists()]
        if todo:
            log.info("embedding rows %d..%d of %s with %s", todo[0][1], end, passages, model_name_or_path)
            encoder = Encoder(model_name_or_path, device=device, max_length=passage_maxlength, dtype=dtype)
            done = sum(hi - lo for path, lo, hi in chunks if path.exists())
            with tqdm(total=end - start, initial=done, unit="passage", desc=out.name, disable=not progress) as bar:
                for chunk_file, lo, hi in todo:
                    texts = [prepare_text(p["text"], None if text.no_title else p["title"], text.lowercase,
                                          text.normalize_text) for p in store.iter_rows(lo, hi)]
                    embeddings = encoder.encode(texts, batch_size=batch_size, progress=bar)
                    with atomic_write(chunk_file, "wb") as f:
                        np.save(f, embeddings)
        chunk_files = [path for path, _, _ in chunks]
        save_shard(out, store.ids_between(start, end), [np.load(c, mmap_mode="r") for c in chunk_files])
        with atomic_write(done_meta) as f:
            json.dump(config, f)
        shutil.rmtree(partial)
        log.info("wrote %s (%d passages)", out, end - start)
        return out


class Retriever:
    """Queries -> top-k passages {"id", "title", "text", "score"}, best first (inner product)."""

    def __init__(self, encoder: Encoder, index: Index, store: PassageStore, text: TextOptions | None = None,
                 batch_size: int = 64):
        self.encoder, self.index, self.store = encoder, index, store
        self.text = text or TextOptions()
        self.batch_size = batch_size
        ids = index.all_ids
        try:
            self.rows = store.rows_of(ids)
        except InputError as e:
            raise InputError(f"the embeddings do not match the passages: {e}") from None
        if len(np.unique(self.rows)) != len(self.rows):
            raise InputError("the embeddings hold some passage ids more than once (overlapping shards in the glob?)")
        if len(self.rows) < len(store):
            log.warning("embeddings cover %d of the %d passages in %s", len(self.rows), len(store), store.path)
        if encoder.dim != index.dim:
            raise InputError(f"encoder dimension {encoder.dim} does not match the embeddings' {index.dim}: "
                             "they were made by another encoder")

    @classmethod
    def from_paths(cls, model_name_or_path: str, passages: str, passages_embeddings_glob: str,
                   projection_size: int | None = None, index_options: IndexOptions | None = None,
                   indexing_batch_size: int = 1_000_000, save_or_load_index: bool = False, text: TextOptions | None = None,
                   question_maxlength: int = 512, batch_size: int = 64, device: str | None = None,
                   dtype: str = "auto") -> "Retriever":
        """Build from the paper's command-line values (`embedded` for the embedded encoder/corpus)."""
        store = PassageStore(defaults.resolve_passages(passages))
        index = build_index(passages_embeddings_glob, projection_size, indexing_batch_size, save_or_load_index,
                            index_options)
        encoder = Encoder(defaults.resolve_encoder(model_name_or_path), device=device, max_length=question_maxlength,
                          dtype=dtype)
        return cls(encoder, index, store, text, batch_size)

    def search(self, queries: list[str], k: int) -> list[list[dict]]:
        """Top-k passages per query, best first."""
        if not queries:
            return []
        texts = [prepare_text(q, None, self.text.lowercase, self.text.normalize_text) for q in queries]
        scores, positions = self.index.search(self.encoder.encode(texts, batch_size=self.batch_size), k)
        return [
            [dict(self.store.get_row(int(self.rows[p])), score=float(s)) for s, p in zip(row_scores, row_pos) if p >= 0]
            for row_scores, row_pos in zip(scores, positions)
        ]

    def search_merged(self, query_lists: list[list[str]], k: int) -> list[list[dict]]:
        """Per item, the top-k of each of its queries merged by rank (1st of each query, then 2nd, ...), no duplicates."""
        flat = [q for queries in query_lists for q in queries]
        results = iter(self.search(flat, k))
        merged = []
        for queries in query_lists:
            per_query = [next(results) for _ in queries]
            seen, ctxs = set(), []
            for rank in range(k):
                for hits in per_query:
                    if rank < len(hits) and hits[rank]["id"] not in seen:
                        seen.add(hits[rank]["id"])
                        ctxs.append(hits[rank])
            merged.append(ctxs)
        return merged


def ensure_embedded_index(model_name_or_path: str = defaults.EMBEDDED, passages: str = defaults.EMBEDDED,
                          output_dir: str | None = None, batch_size: int = 64, progress: bool = True,
                          **retriever_options) -> Retriever:
    """A ready Retriever over the embedded corpus: embeds it once into `embeddings_dir()`, later calls reuse it.

    Same files as `generate_passage_embeddings.py` with its defaults, so either one fills the cache for the other.
    Another TSV needs its own `output_dir`.
    """
    if output_dir is None:
        if passages not in (None, "", defaults.EMBEDDED):
            raise InputError("ensure_embedded_index: pass output_dir for a corpus other than the embedded one")
        output_dir = str(defaults.embeddings_dir())
    model = defaults.resolve_encoder(model_name_or_path)
    tsv = defaults.resolve_passages(passages)
    shard = embed_passages(model, tsv, output_dir, batch_size=batch_size, progress=progress)
    return Retriever.from_paths(model, tsv, str(shard), batch_size=batch_size, **retriever_options)


QUERY_FIELDS = ("queries", "instruction", "question")


def queries_of(item: dict, path: str, line: int, query_field: str | None = None) -> list[str]:
    """The retrieval queries of an input item: `query_field` if given, else the first present of `queries` (the
    Intent Reconstructor's list), `instruction` (the paper's README), `question`. A field may hold a str or a list."""
    fields = [query_field] if query_field else [f for f in QUERY_FIELDS if item.get(f) not in (None, "", [])]
    if not fields:
        raise InputError(f"{where(path, line)}: no query field (expected one of {', '.join(QUERY_FIELDS)})")
    value = require(item, fields[0], path, line, (str, list))
    queries = [value] if isinstance(value, str) else value
    if not queries or not all(isinstance(q, str) and q.strip() for q in queries):
        raise InputError(f"{where(path, line, fields[0])}: expected a non-empty string or list of non-empty strings")
    return queries


def retrieve_records(retriever: Retriever, records: list[tuple[int, dict]], path: str, n_docs: int,
                     query_field: str | None = None) -> list[dict]:
    """Copies of the items with `ctxs` = the merged top-`n_docs` passages of each item's queries."""
    query_lists = [queries_of(item, path, line, query_field) for line, item in records]
    ctxs = retriever.search_merged(query_lists, n_docs)
    return [dict(item, ctxs=c) for (_, item), c in zip(records, ctxs)]
