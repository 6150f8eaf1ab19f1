"""The staged jobs: which stages each paper table needs at demo and paper scale, the cache (skip, rerun on change,
clear failure) and the collection of a table's measured rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smart import pipeline
from smart.evaluation import paper
from smart.evaluation.tasks import load_examples
from smart.io import InputError


@pytest.fixture
def demo(tmp_path, monkeypatch) -> pipeline.Setup:
    for name in ("QUICK", "MAX_ARTICLES", "N_TRAIN", "N_DEV", "PRECISION", "NO_VLLM", "BACKEND", "DEMO_DATA", "MIX",
                 "MODEL_ANSWERS", "MISSED_FACTS", "RESTATE_REQUEST"):
        monkeypatch.delenv(name, raising=False)
    return pipeline.demo_setup(tmp_path / "run", tmp_path / "data")


def keys(stages: list[pipeline.Stage]) -> dict[str, str]:
    out: dict[str, str] = {}
    for stage in stages:
        out[stage.name] = pipeline.stage_key(stage, out)
    return out


def test_tables_share_the_quickstart_stages(demo):
    quickstart = keys(pipeline.quickstart_stages(demo))
    assert list(quickstart) == ["prepare", "embed", "retrieve_samples", "real_questions", "retrieve_dev", "create_data",
                                "contamination", "stage1", "stage2", "eval_smart", "eval_baselines", "report"]
    tables = {t: keys(pipeline.table_stages(t, demo)) for t in ("table2", "table3", "table4")}
    for table, stage_keys in tables.items():  # the same commands, hence the same cache entries
        assert all(stage_keys[name] == quickstart[name] for name in stage_keys if name in quickstart), table
    assert "eval_baselines" not in tables["table3"] and "eval_baselines" in tables["table4"]
    assert set(tables["table2"]) == set(quickstart) - {"report"} | {"eval_table2_baselines"}  # + the modular agents
    modular = {s.name: s for s in pipeline.table_stages("table2", demo)}["eval_table2_baselines"]
    assert modular.cmd[-2:] == ["--method", "modular"] and modular.outputs == demo.metrics(demo.run / "eval", ["modular"])
    assert [n for n in tables["table3"] if n.startswith("train_long_")] == [
        "train_long_full", "train_long_no_intent", "train_long_no_locator", "train_long_generator_only"]
    assert tables["table4"]["train_long_full"] == tables["table3"]["train_long_full"]  # one long-only run for both
    stages = {s.name: s for s in pipeline.table_stages("table3", demo)}
    no_locator = stages["train_long_no_locator"]
    assert no_locator.env["MODEL"] == demo.base_model and no_locator.env["TRAIN_FILE"].endswith("train_long_no_locator.jsonl")
    assert stages["eval_train_long_no_locator"].cmd[-2:] == ["--method", "smart_no_locator"]
    assert stages["eval_inference_ablation"].cmd[-4:] == ["--method", "smart_no_intent", "smart_no_locator",
                                                          "smart_generator_only"]
    check = {s.name: s for s in pipeline.quickstart_stages(demo)}["contamination"]
    assert check.cmd[check.cmd.index("--train") + 1:check.cmd.index("--eval_files")] == [demo.train_short, demo.train_long]
    assert all("contamination" in t for t in tables.values())  # the table commands report it too
    with pytest.raises(InputError, match="unknown table 'table5'"):
        pipeline.table_stages("table5", demo)


def test_handwritten_questions_reuse_the_quickstart_and_get_their_own_passages(demo, tmp_path):
    quickstart = keys(pipeline.quickstart_stages(demo))
    stages = pipeline.handwritten_stages(demo)
    handwritten = keys(stages)
    assert list(handwritten) == ["prepare", "embed", "retrieve_samples", "real_questions", "retrieve_dev", "create_data",
                                 "stage1", "stage2",
                                 "retrieve_handwritten", "eval_handwritten_smart", "eval_handwritten_baselines"]
    assert all(handwritten[n] == quickstart[n] for n in handwritten if n in quickstart)  # the quickstart's cache
    by_name = {s.name: s for s in stages}
    retrieve = by_name["retrieve_handwritten"].cmd
    assert retrieve[retrieve.index("--data") + 1] == "eval/handwritten/*.jsonl"
    assert retrieve[retrieve.index("--passages") + 1] == by_name["retrieve_dev"].cmd[by_name["retrieve_dev"].cmd.index("--passages") + 1]
    smart = by_name["eval_handwritten_smart"].cmd
    files = smart[smart.index("--input_file") + 1:smart.index("--backend")]
    assert files == [str(demo.run / "handwritten" / "data" / f"{t}.jsonl") for t in ("popqa", "pubhealth", "arc_c")]
    assert smart[smart.index("--model_name") + 1] == str(demo.run / "stage2" / "merged")
    baselines = by_name["eval_handwritten_baselines"].cmd
    assert baselines[-3:] == ["--method", "no_retrieval", "vanilla_rag"] and "--dtype" in baselines
    for task in ("popqa", "pubhealth", "arc_c"):  # the shipped questions load as the paper's files do
        assert len(load_examples(task, Path("eval/handwritten") / f"{task}.jsonl", need_passages=False)) == 30


def test_demo_data_comes_from_real_questions_through_create_data(demo, tmp_path, monkeypatch):
    stages = {s.name: s for s in pipeline.quickstart_stages(demo)}
    create = stages["create_data"]
    assert create.cmd[:3] == ["bash", "data_creation/create_data.sh", str(stages["real_questions"].outputs[0])]
    assert create.env["TEACHER"] == "answer" and create.after == ["retrieve_dev"]
    assert create.env["ANSWER_TEACHER"] == "vllm" and create.env["ANSWER_MODEL"] == demo.base_model
    assert create.env["MISSED_FACTS"] == "0" and create.env["RESTATE_REQUEST"] == "0"
    assert demo.settings["request restated after the passages"] == "no"
    monkeypatch.setenv("RESTATE_REQUEST", "1")
    restated = pipeline.demo_setup(tmp_path / "run", tmp_path / "data")
    assert {s.name: s for s in pipeline.quickstart_stages(restated)}["create_data"].env["RESTATE_REQUEST"] == "1"
    assert restated.settings["request restated after the passages"] == "yes"
    monkeypatch.delenv("RESTATE_REQUEST")
    monkeypatch.setenv("MODEL_ANSWERS", "0")
    gold = {s.name: s for s in pipeline.quickstart_stages(pipeline.demo_setup(tmp_path / "run", tmp_path / "data"))}
    assert "ANSWER_TEACHER" not in gold["create_data"].env
    monkeypatch.setenv("NO_VLLM", "1")
    monkeypatch.delenv("MODEL_ANSWERS")
    hf = {s.name: s for s in pipeline.quickstart_stages(pipeline.demo_setup(tmp_path / "run", tmp_path / "data"))}
    assert hf["create_data"].env["ANSWER_TEACHER"] == "hf"
    assert demo.train_short == str(create.outputs[0]) and demo.train_long == str(create.outputs[1])
    assert demo.eval_files == [str(p) for p in stages["retrieve_dev"].outputs] and demo.data_stage == "create_data"
    assert stages["stage1"].after == ["create_data"] and stages["eval_baselines"].cmd[-3:] == [
        "--method", "no_retrieval", "vanilla_rag"]
    monkeypatch.setenv("DEMO_DATA", "templates")
    templates = pipeline.demo_setup(tmp_path / "run", tmp_path / "data")
    assert [s.name for s in templates.data_stages][-1] == "demo_data" and templates.eval_files[0].endswith("popqa_dev.jsonl")
    monkeypatch.setenv("DEMO_DATA", "rules")
    with pytest.raises(InputError, match="DEMO_DATA=rules"):
        pipeline.demo_setup(tmp_path / "run", tmp_path / "data")


def test_paper_scale_needs_its_files_and_caps_the_ablation_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("EVAL_DIR", str(tmp_path / "eval"))
    monkeypatch.setenv("TRAIN_SHORT", str(tmp_path / "short.jsonl"))
    monkeypatch.setenv("TRAIN_LONG", str(tmp_path / "long.jsonl"))
    monkeypatch.setenv("TASKS", "popqa asqa")
    with pytest.raises(InputError, match=r"not found: .*popqa_longtail_w_gs.jsonl, .*asqa_eval_gtr_top100.json, .*short.jsonl"):
        pipeline.paper_setup(tmp_path / "run")
    (tmp_path / "eval").mkdir()
    for name in ("eval/popqa_longtail_w_gs.jsonl", "eval/asqa_eval_gtr_top100.json", "short.jsonl", "long.jsonl"):
        (tmp_path / name).write_text("{}\n")
    setup = pipeline.paper_setup(tmp_path / "run")
    assert setup.tasks == ["popqa", "asqa"] and setup.data_stages == [] and setup.base_model == "meta-llama/Llama-2-7b-hf"
    table3 = {s.name: s for s in pipeline.table_stages("table3", setup)}
    assert table3["train_long_no_intent"].env["MAX_TRAIN_SAMPLES"] == "60000"
    assert "LEARNING_RATE" not in table3["stage1"].env  # the stage scripts' paper defaults
    table4 = {s.name for s in pipeline.table_stages("table4", setup)}
    assert "train_long_all" in table4 and "train_long_full" not in table4
    monkeypatch.setenv("TASKS", "popqa nq")
    with pytest.raises(InputError, match=r"unknown \['nq'\]"):
        pipeline.paper_setup(tmp_path / "run")


def write_stage(tmp_path: Path, name: str, text: str, after: list[str] | None = None) -> pipeline.Stage:
    out = tmp_path / f"{name}.txt"
    code = f"import pathlib; pathlib.Path({str(out)!r}).write_text({text!r})"
    return pipeline.Stage(name, [sys.executable, "-c", code], [out], after or [])


def test_run_stages_caches_reruns_on_change_and_fails_clearly(tmp_path, capsys):
    run = tmp_path / "run"
    first, second = write_stage(tmp_path, "a", "1"), write_stage(tmp_path, "b", "2", ["a"])
    pipeline.run_stages([first, second], run)
    assert "a: done" in capsys.readouterr().out
    pipeline.run_stages([first, second], run)
    out = capsys.readouterr().out
    assert out.count(": cached") == 2
    changed = write_stage(tmp_path, "a", "changed")
    pipeline.run_stages([changed, second], run)  # a changed, so b (which depends on it) runs again too
    out = capsys.readouterr().out
    assert "a: done" in out and "b: done" in out and (tmp_path / "a.txt").read_text() == "changed"
    failing = pipeline.Stage("c", [sys.executable, "-c", "raise SystemExit(3)"], [tmp_path / "c.txt"])
    with pytest.raises(SystemExit, match="stage c failed \\(exit 3\\)"):
        pipeline.run_stages([changed, second, failing], run)
    silent = pipeline.Stage("d", [sys.executable, "-c", "pass"], [tmp_path / "d.txt"])
    with pytest.raises(SystemExit, match="did not write"):
        pipeline.run_stages([silent], run)
    assert not (run / "stages" / "d.json").exists()


def test_a_stage_rerun_under_new_settings_starts_without_its_earlier_results(tmp_path, capsys):
    """A resumable command (here: appends to its results file) resumes a killed run of the same settings, but a run
    under changed settings must not resume from the results of the old ones (run_eval.py skips finished ids)."""
    run, results = tmp_path / "run", tmp_path / "preds.jsonl"

    def stage(setting: str) -> pipeline.Stage:  # fails while the file `kill` exists
        code = (f"import os; open({str(results)!r}, 'a').write({setting!r} + chr(10)); "
                f"open({str(tmp_path / 'done')!r}, 'w').write('x'); "
                f"raise SystemExit(os.path.exists({str(tmp_path / 'kill')!r}))")
        return pipeline.Stage("eval", [sys.executable, "-c", code], [tmp_path / "done"], fresh=[results])

    results.write_text("stale\n")  # left by an older run of another model
    (tmp_path / "kill").write_text("")
    with pytest.raises(SystemExit):
        pipeline.run_stages([stage("old")], run)
    assert results.read_text() == "old\n"
    (tmp_path / "kill").unlink()
    pipeline.run_stages([stage("old")], run)  # the same settings: a resume keeps what the killed run wrote
    assert results.read_text() == "old\nold\n"
    pipeline.run_stages([stage("new")], run)
    assert results.read_text() == "new\n" and "settings or code changed, removed 1 earlier results" in capsys.readouterr().out


def test_a_code_update_reruns_the_stages_and_starts_them_without_their_work_files(tmp_path, monkeypatch, capsys):
    run, work = tmp_path / "run", tmp_path / "work"
    work.mkdir()
    (work / "located.jsonl").write_text("{}\n")  # a resumable step's output, written by the old code
    stage = write_stage(tmp_path, "a", "1")
    stage.fresh = [work]
    monkeypatch.setattr(pipeline, "code_digest", lambda: "old")
    pipeline.run_stages([stage], run)
    work.mkdir()
    (work / "located.jsonl").write_text("{}\n")
    pipeline.run_stages([stage], run)
    assert ": cached" in capsys.readouterr().out and work.exists()
    monkeypatch.setattr(pipeline, "code_digest", lambda: "new")
    pipeline.run_stages([stage], run)
    assert "a: done" in capsys.readouterr().out and not work.exists()


def test_the_code_digest_follows_the_code_and_shipped_questions_not_the_tests_or_docs(tmp_path):
    for path in ("smart/agents.py", "data_creation/real_questions/nq.jsonl", "tests/test_x.py", "docs/a.md",
                 "script_long_learning.sh"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    before = pipeline.code_digest(tmp_path)
    for path in ("tests/test_x.py", "docs/a.md"):
        (tmp_path / path).write_text("y")
    assert pipeline.code_digest(tmp_path) == before
    for path in ("smart/agents.py", "data_creation/real_questions/nq.jsonl", "script_long_learning.sh"):
        (tmp_path / path).write_text("y")
        assert pipeline.code_digest(tmp_path) != before, path
        before = pipeline.code_digest(tmp_path)


def test_evaluation_stages_name_their_prediction_files_as_fresh(demo):
    stages = {s.name: s for s in pipeline.quickstart_stages(demo)}
    fresh = stages["eval_smart"].fresh
    assert demo.run / "eval" / "popqa_smart.jsonl" in fresh and demo.run / "eval" / "arc_c_smart.html" in fresh
    assert len(fresh) == 3 * 3 and not stages["stage1"].fresh
    assert stages["create_data"].fresh == [Path(stages["create_data"].cmd[-1]) / "work"]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_stopped_pipeline_stops_its_stage_and_the_stages_workers(tmp_path):
    pids = tmp_path / "pids.txt"
    worker = ("import subprocess, sys, time; w = subprocess.Popen(['sleep', '300']); "
              f"open({str(pids)!r}, 'w').write(f'{{w.pid}} ' + str(__import__('os').getpid())); time.sleep(300)")
    pipeline_code = ("import sys; from pathlib import Path; from smart import pipeline; "
                     f"pipeline.run_stages([pipeline.Stage('slow', [sys.executable, '-c', {worker!r}], [])], "
                     f"Path({str(tmp_path / 'run')!r}))")
    parent = subprocess.Popen([sys.executable, "-c", pipeline_code])
    deadline = time.time() + 60
    while not (pids.exists() and len(pids.read_text().split()) == 2) and time.time() < deadline:
        time.sleep(0.1)
    worker_pid, stage_pid = map(int, pids.read_text().split())
    try:
        assert alive(worker_pid) and alive(stage_pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.time() + 10
        while (alive(worker_pid) or alive(stage_pid)) and time.time() < deadline:
            time.sleep(0.1)
        assert not alive(stage_pid) and not alive(worker_pid)
    finally:  # a failure here must not leave them running
        for pid in (worker_pid, stage_pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_table_results_collect_each_rows_metrics(demo):
    sources = pipeline.table_sources(demo)
    for row in ("infer_no_locator", "train_no_intent"):
        folder, method = sources["table3"][row]
        for task in demo.tasks:
            path = folder / f"{task}_{method}.metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"task": task, "method": method, "score": 50.0, "fallbacks": {}}))
    ours = pipeline.table_results("table3", demo)
    assert set(ours) == {"infer_no_locator", "train_no_intent"} and set(ours["train_no_intent"]) == set(demo.tasks)
    assert ours["train_no_intent"]["popqa"]["method"] == "smart_no_intent"
    assert set(sources["table3"]) == {row.key for row in paper.get_table("table3").rows}
    assert all(set(sources[t]) <= {row.key for row in paper.get_table(t).rows} for t in sources)
    assert "50.0 / 35.17 (+14.8)" in paper.render_table("table3", ours)  # PopQA, trained w/o the Intent Reconstructor
