"""The authors' released files in our format: each quirk repaired and counted, the result valid and trainable, the CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from smart import trajectory as T
from smart.data.authors_data import RECORD_KEYS, normalize_files, normalize_record, normalize_records
from smart.io import InputError
from smart.training import trainer as training

FIXTURES = Path(__file__).parent / "fixtures" / "trajectories"
AUTHORS_FILES = [FIXTURES / f"authors_shape_{name}.json" for name in ("long", "short", "quirks")]
REPO = Path(__file__).resolve().parent.parent
CLI = REPO / "data_creation" / "normalize_authors_data.py"

RAW = {r["id"]: r for path in AUTHORS_FILES for r in json.loads(path.read_text())}
VALID = [json.loads(line) for line in (FIXTURES / "long_valid.jsonl").read_text().splitlines()]
HEADER = "header <|{}|> without colon".format
REPAIR_COUNTS = {"type alias": 7, HEADER("Locator"): 5, "stray whitespace": 5, "missing type": 3,
                 HEADER("Reconstructor"): 2, HEADER("Generator"): 2, "opening <|retrieval|>": 2,
                 "empty [Cite] list": 2, "locator block without relevant facts dropped": 1}

# id -> (repairs, our type, {field: [(old, new), ...]}): the normalized record is the raw one with these edits
CHANGES = {
    "quirk_long_1": (["missing type", HEADER("Locator")], T.LONG, {"output": [("<|Locator|>\n", "<|Locator|>:\n")]}),
    "quirk_long_2": (["missing type", "stray whitespace"], T.LONG, {
        "output": [("[Relevant]: [1] Pharos of Alexandria\nThe", "[Relevant]: [1] Pharos of Alexandria\n The")]}),
    "quirk_long_3": (["missing type", HEADER("Reconstructor"), HEADER("Generator"), "opening <|retrieval|>",
                      "stray whitespace"], T.LONG, {"output": [
                          ("<|Reconstructor|>\n", "<|Reconstructor|>:\n"), ("<|retrieval|>", "<retrieval>"),
                          ("[1] Mount Etna \n Mount", "[1] Mount Etna\nMount"),
                          ("Europe. \n[2] Sicily \n Sicily", "Europe.\n[2] Sicily\nSicily"),
                          ("Palermo. </retrieval>", "Palermo.</retrieval>"),
                          ("[1] Mount Etna \nMount", "[1] Mount Etna\n Mount"), ("[2] Sicily \n", "[2] Sicily\n"),
                          ("<|Generator|>\n", "<|Generator|>:\n"), ("Sea. \n[Cite]", "Sea.\n[Cite]")]}),
    "quirk_short_1": (["type alias", HEADER("Locator"), "opening <|retrieval|>", "stray whitespace"], T.LOCATOR_TYPE, {
        "instruction": [("<|retrieval|>", "<retrieval>"), ("Mount Etna \n", "Mount Etna\n"),
                        ("<|Locator|>\n", "<|Locator|>:\n")],
        "output": [("Mount Etna \n", "Mount Etna\n")]}),
    "quirk_short_2": (["type alias", HEADER("Locator"), "stray whitespace"], T.GENERATOR_TYPE, {
        "input": [("<|Locator|>\n", "<|Locator|>:\n"), ("Vesuvius\nIt is", "Vesuvius\n It is")]}),
    "quirk_short_3": (["type alias", HEADER("Locator"), "empty [Cite] list", "locator block without relevant facts dropped"],
                      T.GENERATOR_NO_FACTS, {
        "instruction": [("<|Locator|>\n[Irrelevant]: [1] Lacking Supporting Facts\n"
                         "[Irrelevant]: [2] Lacking Supporting Facts</eol>\n\n", "")],
        "output": [(" \n[Cite]: </eog>", "</eog>")]}),
    "quirk_short_4": (["type alias"], T.INTENT, {}),
    "quirk_short_5": (["type alias", HEADER("Reconstructor")], T.INTENT, {
        "instruction": [("<|Reconstructor|>\n", "<|Reconstructor|>:\n")]}),
    "quirk_short_6": (["type alias", HEADER("Generator"), "empty [Cite] list"], T.GENERATOR_NO_FACTS, {
        "instruction": [("<|Generator|>\n", "<|Generator|>:\n")], "output": [("\n[Cite]:</eog>", "</eog>")]}),
    "quirk_short_7": (["type alias", HEADER("Locator"), "stray whitespace"], T.LOCATOR_TYPE, {
        "instruction": [("Lighthouse \n A", "Lighthouse\nA"), ("waterways. \n[2] Tide \n Tides", "waterways.\n[2] Tide\nTides"),
                        ("Earth. </retrieval>", "Earth.</retrieval>"), ("<|Locator|>\n", "<|Locator|>:\n")],
        "output": [("Lighthouse \n", "Lighthouse\n")]}),
}


def edited(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def test_fixtures_cover_every_record():
    assert set(CHANGES) == set(RAW)


@pytest.mark.parametrize("record_id", CHANGES)
def test_normalized_text_is_the_raw_text_with_exactly_the_repairs(record_id):
    repairs, kind, edits = CHANGES[record_id]
    raw = RAW[record_id]
    normalized, made = normalize_record(raw)
    expected = {**raw, "type": kind, **{f: edited(raw[f], e) for f, e in edits.items()}}
    assert normalized == expected and made == repairs
    assert list(normalized) == list(RECORD_KEYS) and T.validate_record(normalized) == []


def test_files_normalize_with_exact_repair_counts():
    result = normalize_files(AUTHORS_FILES)
    assert (result.records_in, len(result.records), result.skipped) == (10, 10, {})
    assert result.repairs == Counter(REPAIR_COUNTS)
    assert all(T.validate_record(r) == [] for r in result.records)
    assert Counter(r["type"] for r in result.records) == {T.LONG: 3, T.LOCATOR_TYPE: 2, T.GENERATOR_TYPE: 1,
                                                          T.GENERATOR_NO_FACTS: 2, T.INTENT: 2}


def test_our_own_records_pass_unchanged_and_normalizing_twice_changes_nothing():
    ours = normalize_records((str(i), r) for i, r in enumerate(VALID))
    assert ours.records == VALID and not ours.repairs
    once = normalize_files(AUTHORS_FILES).records
    twice = normalize_records((str(i), r) for i, r in enumerate(once))
    assert twice.records == once and not twice.repairs


def test_long_record_without_type_input_and_end_marker_gets_them():
    raw = {k: v for k, v in VALID[0].items() if k not in ("type", "input")}
    normalized, repairs = normalize_record({**raw, "instruction": "which volcano buried pompeii?"})
    assert normalized == VALID[0] and repairs == ["missing type", "missing input", "missing </eoi>"]


def test_unrepairable_records_are_skipped_by_reason_with_their_location():
    locator, long = RAW["quirk_short_7"], RAW["quirk_long_1"]
    rows = [
        {"id": "no_output", "instruction": "q</eoi>\n\n", "input": ""},
        {"id": "not_text", "instruction": 3, "input": "", "output": "x</eog>"},
        {**locator, "id": "summarizer", "type": "summarizer"},
        {**locator, "id": "half_judged", "output": locator["output"].replace("\n[Irrelevant]: [2] Lacking Supporting Facts", "")},
        {**RAW["quirk_short_5"], "id": "no_marker", "instruction": "which volcano buried pompeii?<|Reconstructor|>\n"},
        {**long, "id": "titled", "output": long["output"].replace("[2] Lacking Supporting Facts", "[2] Vesuvius")},
        {**VALID[0], "id": "ablated", "ablation": "no_intent"},
        locator,
    ]
    result = normalize_records((f"rows.jsonl:{i}", r) for i, r in enumerate(rows, start=1))
    assert [r["id"] for r in result.records] == ["quirk_short_7"] and result.records_in == 8
    assert result.skipped == {
        "record: missing field 'output'": ["rows.jsonl:1 (no_output)"],
        "record: field 'instruction' is not a string": ["rows.jsonl:2 (not_text)"],
        "unknown type 'summarizer'": ["rows.jsonl:3 (summarizer)"],
        "locator judged N of N passages": ["rows.jsonl:4 (half_judged)"],
        "intent record without </eoi>": ["rows.jsonl:5 (no_marker)"],
        "rendering again would change the text": ["rows.jsonl:6 (titled)"],
        "ablated record (normalize the full trajectories, then derive the ablations)": ["rows.jsonl:7 (ablated)"],
    }
    assert result.report(max_locations=0)["skipped"] == {reason: 1 for reason in result.skipped}


def test_normalized_records_train(tmp_path, tiny_llama_dir):
    with pytest.raises(InputError, match="unbalanced retrieval tags"):  # the raw `<|retrieval|>` opening
        training.load_examples(FIXTURES / "authors_shape_quirks.json")
    data = tmp_path / "authors.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in normalize_files(AUTHORS_FILES).records))
    assert len(training.load_examples(data)) == 10
    out = training.train(training.TrainArgs(
        train_file=str(data), output_dir=str(tmp_path / "out"), model_name_or_path=str(tiny_llama_dir),
        use_special_tokens=True, per_device_train_batch_size=5, max_train_steps=2, seed=0))
    losses = [json.loads(line)["loss"] for line in (out / training.LOG_FILE).read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True)


def test_cli_writes_records_and_reports(tmp_path):
    out = tmp_path / "authors.jsonl"
    run = run_cli("--input_file", *map(str, AUTHORS_FILES), "--output_file", str(out))
    assert run.returncode == 0 and run.stderr == ""
    report = json.loads(run.stdout)
    assert report == {"records_in": 10, "records_out": 10, "repairs": REPAIR_COUNTS, "skipped": {}, "skipped_records": {}}
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in written] == list(RAW) and all(T.validate_record(r) == [] for r in written)


def test_cli_lists_skipped_records(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(RAW["quirk_short_4"]) + "\n" + json.dumps({"id": "empty", "instruction": "q"}) + "\n")
    run = run_cli("--input_file", str(rows), "--output_file", str(tmp_path / "out.jsonl"))
    assert run.returncode == 0 and "1 of 2 records skipped" in run.stderr
    assert json.loads(run.stdout)["skipped_records"] == {"record: missing field 'output'": [f"{rows}:2 (empty)"]}


@pytest.mark.parametrize("name, text, message", [
    ("bad.json", '[\n{"id": "a"},\n{"id": \n', "bad.json:4: invalid JSON"),
    ("bad.jsonl", json.dumps(RAW["quirk_short_4"]) + "\n[1, 2]\n", "bad.jsonl:2: expected a JSON object"),
])
def test_cli_malformed_file_names_file_and_line_and_writes_nothing(tmp_path, name, text, message):
    bad, out = tmp_path / name, tmp_path / "out.jsonl"
    bad.write_text(text)
    out.write_text("previous\n")
    run = run_cli("--input_file", str(AUTHORS_FILES[0]), str(bad), "--output_file", str(out))
    assert run.returncode == 2 and f"error: {tmp_path}/{message}" in run.stderr and "Traceback" not in run.stderr
    assert out.read_text() == "previous\n" and run.stdout == ""
