"""eval/score.py: rescoring a predictions file gives the numbers eval/run_eval.py wrote for the same run, under
both protocols; rows join by id or by order; bad input is one located error (exit 2)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from smart.inference.backends import Backend

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "eval"
FILES = {"qa": "qa.jsonl", "popqa": "popqa.jsonl", "pubhealth": "pubhealth.jsonl", "arc_c": "arc_c.jsonl",
         "squad": "squad.jsonl", "asqa": "asqa.json"}


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "eval" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


score, run_eval = load("score"), load("run_eval")
# per task, an answer for each fixture item, in order; the protocols disagree on some of them
REPLIES = {
    "qa": ("Seine[1]", "shakespeare", "Jupiter"),  # strict 0 1 1; paper 1 0 1
    "popqa": ("Politician.", "Pristina"),  # strict 1 1; paper 0 1
    "pubhealth": ("True.", "REFUTES"),  # strict 1 1; paper 0 1
    "arc_c": ("The answer is C", "B"),  # strict 1 1; paper 1 0 (the second item's answerKey is "2")
    "squad": ("denver broncos", "Levi's Stadium[1]"),  # strict 1 0; paper 0 1
    "asqa": ("Louis Hayward [1] starred.\nDiCaprio too.", "On February 4, 2018."),  # str-em: strict 1 1; paper 0.5 1
}
EXPECTED = {"qa": (200 / 3, 200 / 3), "popqa": (100.0, 50.0), "pubhealth": (100.0, 50.0), "arc_c": (100.0, 50.0),
            "squad": (50.0, 50.0), "asqa": (100.0, 75.0)}


class CannedBackend(Backend):
    """The given chat replies in turn, whatever the question (the baselines only chat)."""

    name = "canned"

    def __init__(self, replies: tuple[str, ...]) -> None:
        super().__init__()
        self.replies = iter(replies)

    def chat(self, conversations, max_new_tokens, stop=None):
        return [next(self.replies) for _ in conversations]


def exit_code(argv: list[str]) -> int:
    try:
        return score.main(argv)
    except SystemExit as e:
        return e.code


def rescored(capsys, task: str, input_file: Path, predictions: Path, protocol: str, *extra: str) -> dict:
    assert exit_code(["--task", task, "--input_file", str(input_file), "--predictions", str(predictions),
                      "--protocol", protocol, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("task", list(FILES))
def test_rescoring_equals_what_run_eval_wrote(tmp_path, capsys, task):
    args = run_eval.parse_args(["--task", task, "--input_file", str(FIXTURES / FILES[task]), "--method",
                                "vanilla_rag", "--output_dir", str(tmp_path)])
    backend = CannedBackend(REPLIES[task])
    output = tmp_path / f"{task}_vanilla_rag.jsonl"
    written = run_eval.run_one(args, task, str(FIXTURES / FILES[task]), "vanilla_rag", str(output), lambda: backend)
    assert written == json.loads(output.with_name(output.stem + ".metrics.json").read_text())
    protocols = written["protocols"]
    assert (protocols["strict"]["score"], protocols["paper"]["score"]) == pytest.approx(EXPECTED[task])
    for protocol in ("strict", "paper"):
        out = rescored(capsys, task, FIXTURES / FILES[task], output, protocol, "--ndocs", "3")
        assert out == {"task": task, "protocol": protocol, **written["protocols"][protocol], "missing": 0}
    assert written["score"] == written["protocols"]["strict"]["score"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_text_output_and_ids_or_order(tmp_path, capsys):
    popqa = FIXTURES / "popqa.jsonl"  # two items: ids 4222362 (politician), 1185293 (Pristina)
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": 1185293, "answer": "PRISTINA"},
                                                     {"id": "4222362", "answer": "He was a politician"}])
    assert exit_code(["--task", "popqa", "--input_file", str(popqa), "--predictions", str(predictions),
                      "--protocol", "paper"]) == 0
    assert capsys.readouterr().out == "popqa (match, paper protocol): 50.0 [0.0, 100.0] (n=2)\n"
    assert rescored(capsys, "popqa", popqa, predictions, "strict")["score"] == 100.0

    claims = FIXTURES / "pubhealth.jsonl"  # no ids (true, false): rows join by order, or by line number as id
    by_order = rescored(capsys, "pubhealth", claims, write_jsonl(tmp_path / "c.jsonl", [{"answer": "true"}]), "paper")
    assert (by_order["score"], by_order["n"], by_order["missing"]) == (100.0, 1, 1)
    by_id = write_jsonl(tmp_path / "d.jsonl", [{"id": "2", "answer": "false"}, {"id": "1", "answer": "True"}])
    assert rescored(capsys, "pubhealth", claims, by_id, "paper")["score"] == 50.0  # "True" is not "true"
    assert rescored(capsys, "pubhealth", claims, by_id, "strict")["score"] == 100.0


def test_missing_items_are_named_on_stderr(tmp_path, capsys):
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": "dev-1", "answer": "Shakespeare"}])
    assert exit_code(["--task", "qa", "--input_file", str(FIXTURES / "qa.jsonl"), "--predictions",
                      str(predictions)]) == 0
    out = capsys.readouterr()
    assert out.out == "qa (match, strict protocol): 100.0 [100.0, 100.0] (n=1), em 100.00, f1 100.00\n"
    assert out.err == f"warning: 2 items of {FIXTURES / 'qa.jsonl'} have no prediction: scored the 1 that do\n"


@pytest.mark.parametrize("rows,message", [
    ([{"id": "dev-0", "answer": "Seine"}, {"id": "dev-1"}], "p.jsonl:2 field 'answer': missing, or not a string"),
    ([{"id": "dev-0", "answer": "Seine"}, {"id": "dev-9", "answer": "x"}],
     "p.jsonl:2 field 'id': 'dev-9' is not an item of"),
    ([{"answer": "Seine"}], "p.jsonl:1 field 'id': missing required field"),
    ([{"id": "dev-0", "answer": "a"}, {"id": "dev-0", "answer": "b"}], "p.jsonl:2 field 'id': duplicate id 'dev-0'"),
    ([], "p.jsonl: file is empty"),
])
def test_bad_predictions_name_file_line_field(tmp_path, capsys, rows, message):
    predictions = write_jsonl(tmp_path / "p.jsonl", rows)
    assert exit_code(["--task", "qa", "--input_file", str(FIXTURES / "qa.jsonl"), "--predictions",
                      str(predictions)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_bad_evaluation_file_and_order_overflow(tmp_path, capsys):
    evaluation = write_jsonl(tmp_path / "e.jsonl", [{"question": "Q?", "answers": ["a"]}, {"question": "R?"}])
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"answer": "a"}])
    assert exit_code(["--task", "qa", "--input_file", str(evaluation), "--predictions", str(predictions)]) == 2
    assert f"{evaluation}:2 field 'answers'" in capsys.readouterr().err
    evaluation = write_jsonl(tmp_path / "e.jsonl", [{"question": "Q?", "answers": ["a"]}])
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"answer": "a"}, {"answer": "b"}])
    assert exit_code(["--task", "qa", "--input_file", str(evaluation), "--predictions", str(predictions)]) == 2
    assert "p.jsonl:2: 2 predictions for 1 items" in capsys.readouterr().err
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"answer": "a"}])
    assert exit_code(["--task", "qa", "--input_file", str(evaluation), "--predictions", str(predictions),
                      "--ndocs", "3"]) == 2  # --ndocs: the items must carry their passages, as in the run
    assert f"{evaluation}:1 field 'ctxs'" in capsys.readouterr().err
