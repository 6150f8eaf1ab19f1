"""smart.io: located errors, atomic writes, resumable JSONL."""
from __future__ import annotations

import json
import os

import pytest

from smart.io import InputError, ResumableJsonl, atomic_write, exit_on_input_error, read_records, require


def test_read_records_json_jsonl_and_data_key(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"q": 1}\n\n{"q": 2}\n')
    (tmp_path / "b.json").write_text(json.dumps({"data": [{"q": 1}, {"q": 2}]}))
    (tmp_path / "c.json").write_text('{"q": 1}\n{"q": 2}\n')  # JSONL named .json
    for name in ("a.jsonl", "b.json", "c.json"):
        assert [obj["q"] for _, obj in read_records(tmp_path / name)] == [1, 2]
    assert [line for line, _ in read_records(tmp_path / "a.jsonl")] == [1, 3]


@pytest.mark.parametrize("name, text, message", [
    ("bad.jsonl", '{"q": 1}\n{"q": \n', "bad.jsonl:2: invalid JSON"),
    ("list.jsonl", '{"q": 1}\n[1, 2]\n', "list.jsonl:2: expected a JSON object"),
    ("empty.jsonl", "\n", "empty.jsonl: file is empty"),
    ("empty.json", "", "empty.json: file is empty"),
    ("scalar.json", "[1]", "scalar.json:1: item 1 is int"),
])
def test_read_records_errors_name_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        read_records(tmp_path / name)


def test_require_names_field():
    with pytest.raises(InputError, match=r"f.jsonl:4 field 'answers': missing"):
        require({"question": "q"}, "answers", "f.jsonl", 4)
    with pytest.raises(InputError, match=r"field 'answers': expected list, got str"):
        require({"answers": "x"}, "answers", "f.jsonl", 4, list)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out.json"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(out) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "page.html") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "page.html").stat().st_mode & 0o777 == 0o644  # readable by others, as open() would make it


def test_resumable_jsonl_skips_done_and_cuts_torn_tail(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResumableJsonl(path) as out:
        out.write({"id": 1, "x": "a"})
        out.write({"id": 2, "x": "b"})
    with open(path, "a") as f:
        f.write('{"id": 3, "x": "to')  # a kill in the middle of a line
    with ResumableJsonl(path) as out:
        assert 1 in out and 2 in out and 3 not in out
        out.write({"id": 2, "x": "duplicate"})
        out.write({"id": 3, "x": "c"})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["id"], r["x"]) for r in rows] == [(1, "a"), (2, "b"), (3, "c")]


def test_exit_on_input_error(capsys):
    with pytest.raises(SystemExit) as e:
        with exit_on_input_error():
            raise InputError("f.jsonl:3 field 'q': missing required field")
    assert e.value.code == 2 and capsys.readouterr().err == "error: f.jsonl:3 field 'q': missing required field\n"
    with pytest.raises(KeyError):
        with exit_on_input_error():
            raise KeyError("not input")
