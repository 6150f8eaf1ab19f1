"""Passages in DPR's psgs_w100 format: a TSV with header `id<TAB>text<TAB>title`, csv quoting.

`vital_articles_to_tsv` builds the embedded corpus; `PassageStore` looks passages up by id through byte offsets
into the TSV (numpy arrays, cached beside the file), so 21M passages cost ~0.5 GB of RAM, not a dict of strings.
"""
from __future__ import annotations

import csv
from array import array
import json
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from smart.io import InputError, atomic_write, where

log = logging.getLogger(__name__)

HEADER = ["id", "text", "title"]
WORDS_PER_PASSAGE = 100
INDEX_VERSION = 1

csv.field_size_limit(sys.maxsize)


def split_words(text: str, n_words: int = WORDS_PER_PASSAGE) -> list[str]:
    """Non-overlapping passages of `n_words` whitespace-separated words (the last one may be shorter)."""
    words = text.split()
    return [" ".join(words[i : i + n_words]) for i in range(0, len(words), n_words)]


def write_tsv(tsv_path: str | os.PathLike, rows: list[tuple[str, str, str]] | Iterator[tuple[str, str, str]]) -> int:
    """Write (id, text, title) rows as a psgs_w100 TSV, atomically; returns the count."""
    n = 0
    with atomic_write(tsv_path) as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(HEADER)
        for row in rows:
            writer.writerow(row)
            n += 1
    return n


def vital_articles_to_tsv(json_path: str | os.PathLike, tsv_path: str | os.PathLike) -> int:
    """Split each article's `extract` of the vital-articles JSON into 100-word passages (ids 1..N, by title order)."""
    json_path = Path(json_path)
    try:
        articles = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{json_path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(articles, dict) or not articles:
        raise InputError(f"{json_path}: expected a non-empty JSON object title -> article")

    def rows() -> Iterator[tuple[str, str, str]]:
        pid = 0
        for key in sorted(articles):
            article = articles[key]
            if not isinstance(article, dict) or not isinstance(article.get("extract"), str):
                raise InputError(f"{where(json_path, field='extract')}: article '{key}' has no text extract")
            title = " ".join(str(article.get("title") or key).split())
            for text in split_words(article["extract"]):
                pid += 1
                yield str(pid), text, title

    n = write_tsv(tsv_path, rows())
    if n == 0:
        raise InputError(f"{json_path}: no article has any text")
    return n


class _LineReader:
    """Iterate a binary file's lines as text for csv.reader, remembering the byte offset after the last line."""

    def __init__(self, f):
        self.f = f
        self.end = 0
        self.line = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = self.f.readline()
        if not raw:
            raise StopIteration
        self.end += len(raw)
        self.line += 1
        return raw.decode("utf-8")


def _parse_row(raw: bytes) -> list[str]:
    return next(csv.reader([raw.decode("utf-8")], delimiter="\t"))


def _scan(tsv_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the TSV once: (record start offsets with the end appended, ids as int64 or bytes). Validates every row."""
    offsets = array("q")  # 8 bytes per passage, not a Python int object each
    int_ids: array | None = array("q")
    str_ids: list[bytes] = []
    with open(tsv_path, "rb") as f:
        lines = _LineReader(f)
        reader = csv.reader(lines, delimiter="\t")
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{tsv_path}: file is empty (expected header 'id<TAB>text<TAB>title')")
            if [h.strip().lower() for h in header] != HEADER:
                raise InputError(f"{where(tsv_path, 1)}: missing header 'id<TAB>text<TAB>title' (got {header[:3]!r})")
            start = lines.end
            first_line = lines.line + 1
            for row in reader:
                if not row:  # a blank line
                    start, first_line = lines.end, lines.line + 1
                    continue
                if len(row) != 3:
                    raise InputError(f"{where(tsv_path, first_line)}: expected 3 tab-separated columns (id, text, title), got {len(row)}")
                pid = row[0].strip()
                if not pid:
                    raise InputError(f"{where(tsv_path, first_line, 'id')}: empty passage id")
                offsets.append(start)
                if int_ids is not None:
                    if pid.isascii() and pid.isdigit() and (pid == "0" or pid[0] != "0"):
                        int_ids.append(int(pid))
                    else:
                        str_ids.extend(str(i).encode() for i in int_ids)
                        int_ids = None
                if int_ids is None:
                    str_ids.append(pid.encode("utf-8"))
                start = lines.end
                first_line = lines.line + 1
        except csv.Error as e:
            raise InputError(f"{where(tsv_path, lines.line)}: malformed TSV ({e})") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{where(tsv_path, lines.line + 1)}: not UTF-8 ({e.reason})") from None
        offsets.append(start)
    if len(offsets) == 1:
        raise InputError(f"{tsv_path}: no passages after the header")
    ids = np.frombuffer(int_ids, dtype=np.int64) if int_ids is not None else np.array(str_ids, dtype=bytes)
    return np.frombuffer(offsets, dtype=np.int64), ids


class PassageStore:
    """Passages of a psgs_w100 TSV, looked up by id or row without holding the text in memory.

    The byte-offset index is cached beside the TSV as `<tsv>.offsets.npz` (rebuilt when the TSV changes).
    """

    def __init__(self, tsv_path: str | os.PathLike, cache: bool = True):
        self.path = Path(tsv_path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: passages file not found")
        self.offsets, self._keys = self._load_index(cache)
        self._order = None if np.all(self._keys[1:] > self._keys[:-1]) else np.argsort(self._keys, kind="stable")
        sorted_keys = self._keys if self._order is None else self._keys[self._order]
        if len(sorted_keys) > 1 and np.any(sorted_keys[1:] == sorted_keys[:-1]):
            dup = sorted_keys[1:][sorted_keys[1:] == sorted_keys[:-1]][0]
            raise InputError(f"{self.path}: duplicate passage id {self._decode(dup)!r}")
        self._fd = os.open(self.path, os.O_RDONLY)

    def _load_index(self, cache: bool) -> tuple[np.ndarray, np.ndarray]:
        stat = self.path.stat()
        stamp = np.array([INDEX_VERSION, stat.st_size, stat.st_mtime_ns], dtype=np.int64)
        cache_path = self.path.with_name(self.path.name + ".offsets.npz")
        if cache and cache_path.exists():
            try:
                with np.load(cache_path, allow_pickle=False) as z:
                    if np.array_equal(z["stamp"], stamp):
                        return z["offsets"], z["ids"]
            except (OSError, ValueError, KeyError):
                pass
        offsets, ids = _scan(self.path)
        if cache:
            try:
                with atomic_write(cache_path, "wb") as f:
                    np.savez(f, stamp=stamp, offsets=offsets, ids=ids)
            except OSError as e:
                log.warning("could not cache the passage index at %s (%s)", cache_path, e)
        return offsets, ids

    @staticmethod
    def _decode(key) -> str:
        return key.decode("utf-8") if isinstance(key, bytes) else str(key)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def ids(self) -> np.ndarray:
        """All passage ids as a numpy array of str, in file order."""
        return self._keys.astype(str)

    def ids_between(self, start: int, end: int) -> np.ndarray:
        """Ids of rows [start, end) as str."""
        return self._keys[start:end].astype(str)

    def rows_of(self, ids) -> np.ndarray:
        """Row numbers of the given ids (vectorized); InputError naming the first unknown id."""
        ids = np.asarray(ids)
        if self._keys.dtype.kind == "i":
            if ids.dtype.kind not in "iu":
                try:
                    ids = ids.astype(str).astype(np.int64)
                except ValueError:
                    bad = next(i for i in ids.astype(str) if not i.strip().isdigit())
                    raise InputError(f"{self.path}: unknown passage id {bad!r}") from None
        else:
            ids = np.char.encode(ids.astype(str), "utf-8")
        sorted_keys = self._keys if self._order is None else self._keys[self._order]
        pos = np.searchsorted(sorted_keys, ids)
        pos_clipped = np.minimum(pos, len(sorted_keys) - 1)
        found = sorted_keys[pos_clipped] == ids
        if not np.all(found):
            raise InputError(f"{self.path}: unknown passage id {self._decode(ids[~found][0])!r}")
        return pos_clipped if self._order is None else self._order[pos_clipped]

    def get_row(self, row: int) -> dict[str, str]:
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        pid, text, title = _parse_row(os.pread(self._fd, end - start, start))
        return {"id": pid, "title": title, "text": text}

    def get(self, pid: str) -> dict[str, str]:
        """{"id", "title", "text"} of passage `pid`; InputError if unknown."""
        return self.get_row(int(self.rows_of([pid])[0]))

    def iter_rows(self, start: int = 0, end: int | None = None) -> Iterator[dict[str, str]]:
        """Passages of rows [start, end) in file order, read with one sequential pass."""
        end = len(self) if end is None else end
        if start >= end:
            return
        lo, hi = int(self.offsets[start]), int(self.offsets[end])
        with open(self.path, "rb") as f:
            f.seek(lo)
            lines = (raw.decode("utf-8") for raw in iter(lambda: f.readline() if f.tell() < hi else b"", b""))
            for row in csv.reader(lines, delimiter="\t"):
                if row:  # blank lines are skipped, as when indexing
                    yield {"id": row[0], "title": row[2], "text": row[1]}

    def __iter__(self) -> Iterator[dict[str, str]]:
        return self.iter_rows()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0:
            self.close()
