"""psgs_w100 TSV writing/reading and the byte-offset PassageStore."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from smart.io import InputError
from smart.retrieval.passages import PassageStore, split_words, vital_articles_to_tsv, write_tsv


def contriever_read(path) -> list[dict]:
    """How Contriever's load_passages reads a psgs_w100 TSV (csv module, tab delimiter, header skipped)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{"id": r[0], "text": r[1], "title": r[2]} for r in csv.reader(f, delimiter="\t") if r[0] != "id"]


@pytest.fixture
def articles_json(tmp_path):
    words = [f"w{i}" for i in range(230)]
    articles = {
        "Zebra": {"title": "Zebra", "extract": " ".join(words), "description": "", "topic": "Biology"},
        "Aaron": {"title": "Aaron", "extract": 'Aaron ( or ; "Ahärôn") is a\tprophet.\n\nHe spoke.', "topic": "People"},
        "Empty": {"title": "Empty", "extract": "", "topic": "None"},
    }
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(articles), encoding="utf-8")
    return path


def test_vital_articles_split_into_100_word_passages(articles_json, tmp_path):
    tsv = tmp_path / "p.tsv"
    assert vital_articles_to_tsv(articles_json, tsv) == 4
    rows = contriever_read(tsv)
    assert tsv.read_text(encoding="utf-8").splitlines()[0] == "id\ttext\ttitle"
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0] == {"id": "1", "text": 'Aaron ( or ; "Ahärôn") is a prophet. He spoke.', "title": "Aaron"}
    assert [len(r["text"].split()) for r in rows[1:]] == [100, 100, 30]
    assert " ".join(r["text"] for r in rows[1:]).split() == [f"w{i}" for i in range(230)]
    again = tmp_path / "again.tsv"
    vital_articles_to_tsv(articles_json, again)
    assert again.read_bytes() == tsv.read_bytes()  # stable ids and bytes


def test_split_words_is_non_overlapping():
    assert split_words("a b c d e", 2) == ["a b", "c d", "e"]
    assert split_words("   ", 2) == []


def test_store_reads_dpr_quoting_tabs_and_newlines(tmp_path):
    tsv = tmp_path / "dpr.tsv"
    tsv.write_text(
        'id\ttext\ttitle\n'
        '1\t"Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron\n'
        '2\t"a field with a\ttab and a\nnewline inside quotes"\t"Title, with ""quotes"""\n'
        '3\tplain text\tPlain\n',
        encoding="utf-8",
    )
    store = PassageStore(tsv)
    expected = contriever_read(tsv)
    assert len(store) == 3
    assert [store.get(r["id"]) for r in expected] == [{"id": r["id"], "title": r["title"], "text": r["text"]} for r in expected]
    assert list(store) == [store.get_row(i) for i in range(3)]
    assert list(store.ids) == ["1", "2", "3"]
    assert store.get("2")["text"] == "a field with a\ttab and a\nnewline inside quotes"
    assert isinstance(store.offsets, np.ndarray) and store.offsets.dtype == np.int64


def test_store_string_ids_and_unsorted_ids(tmp_path):
    tsv = tmp_path / "s.tsv"
    write_tsv(tsv, [("doc-b", "second", "B"), ("doc-a", "first", "A"), ("10", "ten", "T"), ("007", "bond", "J")])
    store = PassageStore(tsv)
    assert store.get("doc-a")["text"] == "first"
    assert store.get("007")["text"] == "bond"
    with pytest.raises(InputError, match="unknown passage id '7'"):
        store.get("7")
    assert store.get("10")["title"] == "T"
    assert list(store.rows_of(["10", "doc-b"])) == [2, 0]
    with pytest.raises(InputError, match="unknown passage id 'nope'"):
        store.get("nope")


def test_blank_lines_are_skipped(tmp_path):
    tsv = tmp_path / "blank.tsv"
    tsv.write_text("id\ttext\ttitle\n\n1\tone\tOne\n\n2\ttwo\tTwo\n\n", encoding="utf-8")
    assert list(PassageStore(tsv)) == [{"id": "1", "title": "One", "text": "one"}, {"id": "2", "title": "Two", "text": "two"}]


def test_offset_cache_is_rebuilt_when_the_tsv_changes(tmp_path):
    tsv = tmp_path / "c.tsv"
    write_tsv(tsv, [("1", "old text", "T")])
    assert PassageStore(tsv).get("1")["text"] == "old text"
    assert (tmp_path / "c.tsv.offsets.npz").exists()
    write_tsv(tsv, [("1", "a much longer new text", "T"), ("2", "more", "U")])
    store = PassageStore(tsv)
    assert len(store) == 2 and store.get("1")["text"] == "a much longer new text"


@pytest.mark.parametrize("content, message", [
    ("", "file is empty"),
    ("id\ttext\ttitle\n", "no passages after the header"),
    ("1\tsome text\tTitle\n", ":1: missing header"),
    ("id\ttext\ttitle\n1\tok\tT\n2\tonly two columns\n", ":3: expected 3 tab-separated columns"),
    ("id\ttext\ttitle\n1\tok\tT\n1\tagain\tT\n", "duplicate passage id '1'"),
    ("id\ttext\ttitle\n\tno id\tT\n", ":2 field 'id': empty passage id"),
])
def test_malformed_tsv_names_file_and_line(tmp_path, content, message):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message) as e:
        PassageStore(tsv)
    assert str(tsv) in str(e.value)


def test_missing_file():
    with pytest.raises(InputError, match="not found"):
        PassageStore("/nonexistent/psgs.tsv")


def test_embedded_corpus(embedded_passages):
    store = PassageStore(embedded_passages)
    assert 12_000 < len(store) < 13_000
    assert list(store.ids[:3]) == ["1", "2", "3"]
    lengths = [len(p["text"].split()) for p in store]
    assert max(lengths) == 100 and min(lengths) >= 1
    assert store.get(str(len(store)))["id"] == str(len(store))
