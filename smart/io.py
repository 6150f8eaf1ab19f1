"""File I/O shared by every stage: JSON/JSONL reading with located errors, atomic writes, resumable JSONL."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


class InputError(ValueError):
    """Bad user input: the message names the file, the line and the field."""


@contextlib.contextmanager
def exit_on_input_error(*errors: type[Exception]):
    """For CLIs: bad input (InputError, or `errors`) prints one `error: ...` line and exits 2, with no traceback."""
    try:
        yield
    except (InputError, *errors) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def where(path: str | os.PathLike, line: int | None = None, field: str | None = None) -> str:
    """`file:line field 'x'` prefix for error messages."""
    out = str(path)
    if line is not None:
        out += f":{line}"
    if field is not None:
        out += f" field '{field}'"
    return out


def iter_jsonl(path: str | os.PathLike, tolerate_truncated_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; raise InputError on bad JSON or non-objects.

    With `tolerate_truncated_tail`, a last line without its newline that does not parse (a write killed
    mid-line) is skipped instead of raising: resumable outputs use this.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            if tolerate_truncated_tail and number == len(lines) and not raw.endswith("\n"):
                return
            raise InputError(f"{where(path, number)}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where(path, number)}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def read_records(path: str | os.PathLike, list_key: str = "data") -> list[tuple[int, dict]]:
    """Read a .json (a list, or {list_key: [...]}) or .jsonl file as (line_or_index, object) pairs.

    For .json files the number is the 1-based item index. An empty file is an error.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.suffix == ".jsonl":
        records = list(iter_jsonl(path))
    else:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise InputError(f"{path}: file is empty")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if text.lstrip().startswith("{") and "\n{" in text:  # a JSONL file named .json
                return list(iter_jsonl(path))
            raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if isinstance(data, dict) and isinstance(data.get(list_key), list):
            data = data[list_key]
        if not isinstance(data, list):
            raise InputError(f"{path}: expected a JSON list of objects (or {{'{list_key}': [...]}})")
        records = []
        for i, obj in enumerate(data, start=1):
            if not isinstance(obj, dict):
                raise InputError(f"{where(path, i)}: item {i} is {type(obj).__name__}, expected an object")
            records.append((i, obj))
    if not records:
        raise InputError(f"{path}: file is empty")
    return records


def require(obj: dict, field: str, path: str | os.PathLike, line: int, kind: type | tuple[type, ...] | None = None) -> Any:
    """Return obj[field], raising InputError naming file, line and field when it is missing or mistyped."""
    if field not in obj or obj[field] is None:
        raise InputError(f"{where(path, line, field)}: missing required field")
    value = obj[field]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"{where(path, line, field)}: expected {names}, got {type(value).__name__}")
    return value


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside `path` and rename it into place only when the block succeeds; the file
    gets the permissions a plain open() would (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write all rows atomically; returns the count."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_records(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write rows as JSONL when the path ends in .jsonl, else as one JSON list (atomically)."""
    if str(path).endswith(".jsonl"):
        write_jsonl(path, rows)
    else:
        write_json(path, rows)


class ResumableJsonl:
    """Append-only JSONL keyed by a field: a rerun skips keys already written.

    Each row is written with one `write` call of a whole line and flushed, so a kill loses at most the rows
    in flight; a torn last line (no newline) is cut off on reopen, never duplicated or parsed half.
    """

    def __init__(self, path: str | os.PathLike, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.done: dict[str, dict] = {}
        if self.path.exists():
            self._truncate_torn_tail()
            for _, row in iter_jsonl(self.path):
                self.done[str(row[key])] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def _truncate_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)

    def __contains__(self, key: object) -> bool:
        return str(key) in self.done

    def write(self, row: dict) -> None:
        k = str(row[self.key])
        if k in self.done:
            return
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self.done[k] = row

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ResumableJsonl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
