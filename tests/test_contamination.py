"""The contamination check (smart/evaluation/contamination.py, eval/check_contamination.py) on trajectory files written by the
combine step's own code and on evaluation files in the paper's shapes: each kind of overlap found, none for disjoint
sets, and bad input as one error line naming file, line and field (exit 2)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from smart.data.combine import records_of
from smart.data.convert import FACT_VERIFICATION_INSTRUCTION, MULTIPLE_CHOICE_INSTRUCTION
from smart.evaluation.contamination import ngrams, record_questions, request_question, source_ids

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_contamination", REPO / "eval" / "check_contamination.py")
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)

CTX = {"title": "Middlemarch", "text": "Middlemarch is a novel by George Eliot, published in 1871.", "relevant": True,
       "fact": "Middlemarch is a novel by George Eliot"}


def item(id: str, instruction: str, input: str = "", dataset: str = "real") -> dict:
    """A located item (data creation's step 3) as combine reads it."""
    return {"id": f"{dataset}_{id}", "dataset_name": dataset, "instruction": instruction, "input": input,
            "output": "George Eliot", "queries": ["Middlemarch author"], "ctxs": [CTX]}


def write_trajectories(path: Path, items: list[dict]) -> Path:
    """Long and short records of the items, as data_creation/combine_data.py writes them, in one file."""
    rows = []
    for it in items:
        long, shorts, problems = records_of(it)
        assert not problems
        rows += [long, *shorts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def popqa(id: str, question: str, **extra) -> dict:
    return {"id": id, "question": question, "answers": ["x"], **extra}


def check(tmp_path: Path, train: list[Path], evals: list[Path], *flags: str) -> dict:
    """Run the CLI and return its --json numbers, per evaluation file name."""
    out = tmp_path / "contamination.json"
    assert cli.main(["--train", *map(str, train), "--eval_files", *map(str, evals), "--json", str(out), *flags]) == 0
    return {Path(e["file"]).name: e for e in json.loads(out.read_text())["eval"]}


def exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:
        return e.code


@pytest.fixture
def train(tmp_path: Path) -> Path:
    return write_trajectories(tmp_path / "train.jsonl", [
        item("triviaqa_5249", "Who wrote the novel Middlemarch, A Study of Provincial Life?"),
        item("fever_1", FACT_VERIFICATION_INSTRUCTION, "Granite is a rock."),
        item("sciq_7", MULTIPLE_CHOICE_INSTRUCTION, "Clouds and fog are made up of\nA: water.\nB: heat.\nC: light."),
        item("squad_9", "In which year did the author of the novel Middlemarch first publish a poem?"),
    ])


def test_request_question_reads_every_record_kind(train: Path):
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    questions = {q for i, r in enumerate(rows, 1) for q in record_questions(r, train, i)}
    assert questions == {"Who wrote the novel Middlemarch, A Study of Provincial Life?", "Granite is a rock.",
                         "Clouds and fog are made up of",
                         "In which year did the author of the novel Middlemarch first publish a poem?"}
    assert request_question(FACT_VERIFICATION_INSTRUCTION + "</eoi>\n\n") == ""
    assert source_ids(rows[1]) >= {"real_triviaqa_5249_intent", "real_triviaqa_5249", "triviaqa_5249"}


def test_same_question_despite_case_punctuation_and_articles(tmp_path: Path, train: Path):
    evals = [write_jsonl(tmp_path / "popqa.jsonl", [popqa("p1", "who wrote novel MIDDLEMARCH -- a study of "
                                                                "provincial life"), popqa("p2", "Who painted it?")]),
             write_jsonl(tmp_path / "pubhealth.jsonl", [{"id": "h1", "question": "granite is a ROCK",
                                                         "answers": ["true"]}]),
             write_jsonl(tmp_path / "arc_c_dev.jsonl", [{"id": "a1", "question": "Clouds and fog are made up of?",
                                                         "choices": {"text": ["water", "ice"], "label": ["A", "B"]},
                                                         "answerKey": "A"}])]
    got = check(tmp_path, [train], evals)
    assert {name: (e["n"], e["same_question"], e["same_id"], e["any"]) for name, e in got.items()} == {
        "popqa.jsonl": (2, 1, 0, 1), "pubhealth.jsonl": (1, 1, 0, 1), "arc_c_dev.jsonl": (1, 1, 0, 1)}
    example = got["popqa.jsonl"]["examples"][0]
    assert example["eval_id"] == "p1" and example["train_id"] == "real_triviaqa_5249"
    assert example["train_question"] == "Who wrote the novel Middlemarch, A Study of Provincial Life?"


def test_same_source_id(tmp_path: Path, train: Path):
    evals = [write_jsonl(tmp_path / "popqa.jsonl", [popqa("triviaqa_5249", "An unrelated question?"),
                                                    popqa("9", "Another one?", source="squad"),
                                                    popqa("fever_2", "A third one?")])]
    got = check(tmp_path, [train], evals)["popqa.jsonl"]
    assert (got["same_id"], got["same_question"], got["ngram"], got["any"]) == (2, 0, 0, 2)


def test_shared_ngram(tmp_path: Path, train: Path):
    evals = [write_jsonl(tmp_path / "popqa.jsonl", [
        popqa("p1", "Tell me in which year did the author of the novel Middlemarch die?")])]
    got = check(tmp_path, [train], evals)["popqa.jsonl"]
    assert (got["ngram"], got["same_question"], got["same_id"], got["any"]) == (1, 0, 0, 1)
    assert got["examples"][0]["train_id"] == "real_squad_9"
    assert check(tmp_path, [train], evals, "--ngram", "12")["popqa.jsonl"]["any"] == 0


def test_short_questions_compared_whole():
    assert ngrams("who wrote it".split(), 8) == {("who", "wrote", "it")}
    assert ngrams([], 8) == set()
    assert len(ngrams(list("abcdefghij"), 8)) == 3


def test_disjoint_sets_and_question_files(tmp_path: Path, train: Path):
    questions = write_jsonl(tmp_path / "train_questions.jsonl", [{"id": "nq_1", "question": "Where is Paris?"}])
    evals = [write_jsonl(tmp_path / "popqa.jsonl", [popqa("p1", "What is the capital of Peru?")]),
             write_jsonl(tmp_path / "health_claims_processed.jsonl", [{"question": "Aspirin cures colds.",
                                                                       "answers": ["false"]}])]
    got = check(tmp_path, [train, questions], evals)
    assert got["health_claims_processed.jsonl"]["task"] == "pubhealth"
    assert all(e[k] == 0 for e in got.values() for k in ("same_question", "same_id", "ngram", "any"))


@pytest.mark.parametrize("bad, message", [
    ('{"id": "x", "instruction": "Who?"}\n{"id": "y", "instr', "train.jsonl:2: invalid JSON"),
    ('{"id": "x", "output": "y"}\n', "train.jsonl:1 field 'instruction': missing"),
    ('{"id": "x", "instruction": 3}\n', "train.jsonl:1 field 'instruction': expected str"),
])
def test_bad_training_line(tmp_path: Path, capsys, bad: str, message: str):
    (tmp_path / "train.jsonl").write_text(bad)
    evals = write_jsonl(tmp_path / "popqa.jsonl", [popqa("p1", "Who?")])
    assert exit_code(["--train", str(tmp_path / "train.jsonl"), "--eval_files", str(evals)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_bad_eval_file(tmp_path: Path, train: Path, capsys):
    evals = write_jsonl(tmp_path / "popqa.jsonl", [popqa("p1", "Who?"), {"id": "p2", "answers": ["x"]}])
    assert exit_code(["--train", str(train), "--eval_files", str(evals)]) == 2
    assert "popqa.jsonl:2 field 'question': missing" in capsys.readouterr().err
    unnamed = write_jsonl(tmp_path / "dev.jsonl", [popqa("p1", "Who?")])
    assert exit_code(["--train", str(train), "--eval_files", str(unnamed)]) == 2
    assert "--tasks" in capsys.readouterr().err
    assert exit_code(["--train", str(train), "--eval_files", str(unnamed), "--tasks", "popqa"]) == 0


def test_cli_process_missing_file_no_traceback(tmp_path: Path):
    evals = write_jsonl(tmp_path / "popqa.jsonl", [popqa("p1", "Who?")])
    proc = subprocess.run([sys.executable, "eval/check_contamination.py", "--train", str(tmp_path / "nope.jsonl"),
                           "--eval_files", str(evals)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: file not found"
