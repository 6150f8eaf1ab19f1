"""eval/run_eval.py end to end on hand-written fixtures in each released file shape (transformers backend, the
tiny Llama), resume, and input errors (exit 2 naming file, line and field, before any model loads)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smart.io import iter_jsonl

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "eval"
FILES = {"qa": "qa.jsonl", "popqa": "popqa.jsonl", "pubhealth": "pubhealth.jsonl", "arc_c": "arc_c.jsonl",
         "squad": "squad.jsonl", "asqa": "asqa.json"}

_spec = importlib.util.spec_from_file_location("run_eval", REPO / "eval" / "run_eval.py")
run_eval = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_eval)


def exit_code(argv: list[str]) -> int:
    """run_eval.main's exit status: its return value, or the code of the SystemExit it raised on bad input."""
    try:
        return run_eval.main(argv)
    except SystemExit as e:
        return e.code


def run(tmp_path, model, task="qa", method="smart", output="preds.jsonl", *extra) -> tuple[int, Path]:
    out = tmp_path / output
    argv = ["--task", task, "--input_file", str(FIXTURES / FILES[task]), "--model_name", str(model), "--method",
            method, "--output_file", str(out), "--backend", "hf", "--batch_size", "4", "--max_new_tokens", "6",
            "--max_intent_tokens", "6", "--max_locator_tokens", "6", "--results_table", str(tmp_path / "results.md"),
            *extra]
    return exit_code(argv), out


def metrics_of(out: Path) -> dict:
    return json.loads(out.with_name(out.stem + ".metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("task", list(FILES))
def test_every_file_shape_end_to_end(tmp_path, tiny_llama_dir, task):
    code, out = run(tmp_path, tiny_llama_dir, task)
    assert code == 0
    rows = [r for _, r in iter_jsonl(out)]
    m = metrics_of(out)
    assert len(rows) == m["n"] == (2 if task != "qa" else 3)
    for r in rows:
        assert {"id", "trajectory", "queries", "facts", "answer", "citations", "score", "fallbacks", "golds"} <= set(r)
        assert r["queries"] and len(r["passages"]) == 3 and r["trajectory"].startswith("<|Instruction|>:\n")
    # the metrics are the predictions' aggregate: score, fallback counts, unparsed labels
    assert m["score"] == pytest.approx(100 * sum(r["score"] for r in rows) / len(rows))
    for name in ("intent", "locator", "generator"):
        assert m["fallbacks"].get(name, 0) == sum(name in r["fallbacks"] for r in rows)
    if task in ("arc_c", "pubhealth"):
        assert m["unparsed"] == sum(r["label"] is None for r in rows)
    if task == "asqa":
        assert "rouge_l" in m and m["str_em"] == m["score"]
    assert m["settings"]["ndocs"] == 3 and m["wall_s"] > 0 and m["generated_tokens"] > 0
    table = (tmp_path / "results.md").read_text().splitlines()
    assert len(table) == 3 and table[2].startswith(f"| {task} | smart | {Path(tiny_llama_dir).name} |")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["no_retrieval", "vanilla_rag", "modular"])
def test_baselines_end_to_end(tmp_path, tiny_llama_dir, method):
    code, out = run(tmp_path, tiny_llama_dir, "arc_c", method)
    assert code == 0
    rows = [r for _, r in iter_jsonl(out)]
    assert [r["method"] for r in rows] == [method] * 2
    assert all(("label" in r) for r in rows) and metrics_of(out)["method"] == method
    assert all(len(r["passages"]) == (0 if method == "no_retrieval" else 3) for r in rows)


@pytest.mark.slow
def test_several_tasks_and_methods_share_one_model_load(tmp_path, tiny_llama_dir, monkeypatch):
    loads = []
    real_load = run_eval.load_backend
    monkeypatch.setattr(run_eval, "load_backend", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    argv = ["--task", "arc_c", "qa", "--input_file", str(FIXTURES / FILES["arc_c"]), str(FIXTURES / FILES["qa"]),
            "--method", "smart", "vanilla_rag", "--model_name", str(tiny_llama_dir), "--backend", "hf",
            "--max_new_tokens", "4", "--max_intent_tokens", "4", "--max_locator_tokens", "4",
            "--output_dir", str(tmp_path / "out")]
    assert exit_code(argv) == 0 and len(loads) == 1
    written = sorted(p.name for p in (tmp_path / "out").glob("*.jsonl"))
    assert written == ["arc_c_smart.jsonl", "arc_c_vanilla_rag.jsonl", "qa_smart.jsonl", "qa_vanilla_rag.jsonl"]
    for name in written:
        m = metrics_of(tmp_path / "out" / name)
        assert f"{m['task']}_{m['method']}.jsonl" == name
    rows = [r for _, r in iter_jsonl(tmp_path / "out" / "arc_c_smart.jsonl")]
    assert all(isinstance(r["gold_passages"], list) for r in rows)
    assert exit_code(argv[:2] + argv[3:]) == 2  # two files for one task: refused before anything runs
    assert exit_code([*argv[:-2], "--output_file", str(tmp_path / "x.jsonl")]) == 2  # several runs need --output_dir


@pytest.mark.slow
def test_resume_skips_finished_examples(tmp_path, tiny_llama_dir, monkeypatch):
    code, out = run(tmp_path, tiny_llama_dir, "qa", "smart", "preds.jsonl", "--limit", "1")
    assert code == 0 and metrics_of(out)["examples_run"] == 1
    first = out.read_text().splitlines()[0]
    with open(out, "a") as f:
        f.write('{"id": "dev-1", "torn')  # a kill mid-write leaves a torn last line
    code, out = run(tmp_path, tiny_llama_dir, "qa", "smart", "preds.jsonl")
    lines = out.read_text().splitlines()
    assert code == 0 and metrics_of(out)["examples_run"] == 2 and metrics_of(out)["n"] == 3
    assert lines[0] == first and [json.loads(x)["id"] for x in lines] == ["dev-0", "dev-1", "dev-2"]

    def no_model(*args, **kwargs):
        raise AssertionError("everything was done: no model should load")

    monkeypatch.setattr(run_eval, "load_backend", no_model)
    code, out = run(tmp_path, tiny_llama_dir, "qa", "smart", "preds.jsonl")
    assert code == 0 and metrics_of(out)["examples_run"] == 0 and out.read_text().splitlines() == lines
    code, _ = run(tmp_path, tiny_llama_dir, "qa", "vanilla_rag", "preds.jsonl")  # another method, same file
    assert code == 2


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_input_errors_name_file_line_field(tmp_path, tiny_llama_dir, capsys):
    good = [json.loads(line) for line in (FIXTURES / "qa.jsonl").read_text().splitlines()]
    cases = {
        "missing_question": ([good[0], {k: v for k, v in good[1].items() if k != "question"}], ":2 field 'question'"),
        "missing_answers": ([{k: v for k, v in good[0].items() if k != "answers"}], ":1 field 'answers'"),
        "missing_ctxs": ([good[0], good[1], {k: v for k, v in good[2].items() if k != "ctxs"}], ":3 field 'ctxs'"),
        "few_ctxs": ([good[0], {**good[1], "ctxs": good[1]["ctxs"][:2]}], ":2 field 'ctxs': 2 passages, fewer than --ndocs 3"),
        "duplicate_id": ([good[0], good[0]], "duplicate id"),
        "empty": ([], "file is empty"),
    }
    for name, (rows, message) in cases.items():
        data = write(tmp_path / f"{name}.jsonl", rows)
        out = tmp_path / f"{name}.preds.jsonl"
        code = exit_code(["--task", "qa", "--input_file", str(data), "--model_name", str(tiny_llama_dir),
                              "--output_file", str(out), "--backend", "hf"])
        err = capsys.readouterr().err
        assert code == 2 and str(data) in err and message in err, (name, err)
        assert not out.exists()
    no_tokenizer = tmp_path / "model_without_tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(tiny_llama_dir / "config.json", no_tokenizer)
    code, out = run(tmp_path, no_tokenizer, "qa")
    assert code == 2 and "no tokenizer" in capsys.readouterr().err and not out.exists()
    bad_arc = write(tmp_path / "arc.jsonl", [{**json.loads((FIXTURES / "arc_c.jsonl").read_text().splitlines()[0]),
                                              "answerKey": "E"}])
    code = exit_code(["--task", "arc_c", "--input_file", str(bad_arc), "--model_name", str(tiny_llama_dir),
                          "--output_file", str(tmp_path / "x.jsonl")])
    assert code == 2 and ":1 field 'answerKey'" in capsys.readouterr().err


def test_cli_help_and_unknown_task():
    done = subprocess.run([sys.executable, str(REPO / "eval" / "run_eval.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--retrieval" in done.stdout and "--lora_path" in done.stdout
    done = subprocess.run([sys.executable, str(REPO / "eval" / "run_eval.py"), "--task", "nq", "--input_file", "x",
                           "--output_file", "y"], capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice: 'nq'" in done.stderr


@pytest.mark.slow
def test_live_retrieval_from_the_cli(tmp_path, tiny_llama_dir, encoder_dir):
    """--retrieval live searches an index (here: the items' own ctxs) per reconstructed query."""
    from test_agents import index_of_ctxs

    from smart.evaluation.tasks import load_examples

    examples = load_examples("qa", FIXTURES / "qa.jsonl", ndocs=3)
    tsv, shard = index_of_ctxs(tmp_path, encoder_dir, examples)
    code, out = run(tmp_path, tiny_llama_dir, "qa", "smart", "live.jsonl", "--retrieval", "live", "--passages",
                    str(tsv), "--passages_embeddings", str(shard), "--retriever_model", str(encoder_dir))
    assert code == 0
    all_ids = {pid for ex in examples for pid in ex.passage_ids}
    for r in iter_jsonl(out):
        row = r[1]
        assert 3 <= len(row["passages"]) <= 3 * len(row["queries"]) and {p["id"] for p in row["passages"]} <= all_ids
    assert metrics_of(out)["settings"]["retrieval"] == "live"
