"""The main job end to end at its smallest size: every stage runs for real, a rerun only prints the table; then the
paper's Tables 3 and 4 on top of it (their extra training and evaluation stages, the quickstart's reused)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from smart.evaluation import paper
REPO = Path(__file__).resolve().parent.parent


def run_quickstart(run_dir: Path, *args: str, script: str | None = None) -> subprocess.CompletedProcess:
    """The quickstart (no args), `scripts/paper_tables.py *args` or another script, at the smallest size."""
    env = {**os.environ, "RUN_DIR": str(run_dir), "MAX_ARTICLES": "150", "N_TRAIN": "8", "N_DEV": "3",
           "MAX_STEPS": "2", "NO_VLLM": "1", "PRECISION": "no", "MAX_NEW_TOKENS": "16", "MAX_LOCATOR_TOKENS": "48", "PYTHONUNBUFFERED": "1"}
    script = script or ("scripts/paper_tables.py" if args else "scripts/quickstart.py")
    cmd = [sys.executable, script, *args]
    process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=1800)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # the pipeline stops its running stage's group in turn
        process.communicate(timeout=60)
        raise
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("quickstart") / "run"


@pytest.mark.slow
def test_quickstart_smallest_size(run_dir, embedded_llm_dir):
    first = run_quickstart(run_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    for stage in ("stage1", "stage2"):
        assert (run_dir / stage / "merged" / "config.json").exists()
        assert list((run_dir / stage).rglob("training_log.jsonl")), f"{stage} wrote no training log"
    metrics = {p.name: json.loads(p.read_text()) for p in (run_dir / "eval").glob("*.metrics.json")}
    assert set(metrics) == {f"{task}_{method}.metrics.json" for task in ("popqa", "pubhealth", "arc_c")
                            for method in ("smart", "no_retrieval", "vanilla_rag")}  # modular: Table 2 only
    assert all(m["n"] == 3 for m in metrics.values())
    from transformers import AutoTokenizer

    trained = AutoTokenizer.from_pretrained(run_dir / "stage2" / "merged")
    assert "</eog>" not in trained.get_vocab()  # the demo default keeps the markers as plain text
    smart_rows = [json.loads(x) for x in (run_dir / "eval" / "popqa_smart.jsonl").read_text().splitlines()]
    assert all(isinstance(r["gold_passages"], list) for r in smart_rows)
    report = (run_dir / "report.md").read_text()
    for needle in ("## Results", "## Time per stage", "training_loss.png", "Agent diagnostics", "PopQA"):
        assert needle in report
    assert (run_dir / "training_loss.png").stat().st_size > 0 and (run_dir / "metrics.png").stat().st_size > 0
    table = (run_dir / "results_table.md").read_text()
    assert table.count("\n") == 2 + 3 and "SMART" in table and "Average" in table

    again = run_quickstart(run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": cached") == len(list((run_dir / "stages").glob("*.json")))
    assert table in again.stdout


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_paper_tables_on_the_quickstart_run(run_dir, embedded_llm_dir):
    """Table 3 trains the four long-only ablation models and evaluates them and the inference ablations; Table 4
    adds the stage-1 model's evaluation and reuses Table 3's long-only model; every cell pairs ours with the paper's."""
    if not (run_dir / "report.md").exists():
        assert run_quickstart(run_dir).returncode == 0
    table3 = run_quickstart(run_dir, "table3")
    assert table3.returncode == 0, table3.stdout[-3000:] + table3.stderr[-3000:]
    assert "stage2: cached" in table3.stdout and "eval_baselines" not in table3.stdout  # table 3 needs no baselines
    tables = run_dir / "tables"
    for ablation in ("full", "no_intent", "no_locator", "generator_only"):
        assert (run_dir / f"train_long_{ablation}" / "merged" / "config.json").exists()
        method = "smart" if ablation == "full" else f"smart_{ablation}"
        rows = rows_of(tables / f"train_long_{ablation}" / f"popqa_{method}.jsonl")
        assert len(rows) == 3 and {r["method"] for r in rows} == {method}
    training = rows_of(tables / "ablation_data" / "train_long_no_locator.jsonl")
    assert training and all("<|Locator|>" not in r["output"] for r in training)
    infer = {m: rows_of(tables / "infer" / f"arc_c_smart_{m}.jsonl") for m in ("no_intent", "no_locator", "generator_only")}
    assert all("<|Reconstructor|>" not in r["trajectory"] for r in infer["no_intent"])
    assert all("<|Locator|>" not in r["trajectory"] and "<retrieval>" in r["trajectory"] for r in infer["no_locator"])
    assert all("<retrieval>" not in r["trajectory"] and r["passages"] == [] for r in infer["generator_only"])
    text = (tables / "table3.md").read_text()
    assert text in table3.stdout
    titles = paper.our_titles("table3")
    for row in ("train_generator_only", "infer_no_locator"):
        assert f"| {paper.get_table('table3').rows[0].paper} |" in text and f"| {titles[row]} |" in text
    assert "/ 57.95 (" in text and "/ 69.32 (" in text  # train / infer generator only, PubHealth
    assert "ASQA" not in text  # no ASQA run of ours at demo scale: its column is left out

    table4 = run_quickstart(run_dir, "table4")
    assert table4.returncode == 0, table4.stdout[-3000:] + table4.stderr[-3000:]
    assert "train_long_full: cached" in table4.stdout and "eval_short: done" in table4.stdout
    text4 = (tables / "table4.md").read_text()
    assert "/ 72.90 (" in text4 and "/ 9.80 (" in text4 and "ARC-C" not in text4  # the paper's Table 4 has no ARC-C
    table2 = run_quickstart(run_dir, "table2", "--paper_version", "preprint")
    assert table2.returncode == 0 and table2.stdout.count(": cached") >= 8 and "/ 47.66 (" in table2.stdout


@pytest.mark.slow
def test_handwritten_questions_on_the_quickstart_run(run_dir, embedded_llm_dir):
    """The hand-written questions get their own top-3 passages and run through the quickstart's models."""
    if not (run_dir / "report.md").exists():
        assert run_quickstart(run_dir).returncode == 0
    done = run_quickstart(run_dir, script="scripts/eval_handwritten.py")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stage2: cached" in done.stdout and "retrieve_handwritten: done" in done.stdout
    out = run_dir / "handwritten"
    for task in ("popqa", "pubhealth", "arc_c"):
        assert all(len(r["ctxs"]) == 3 for r in rows_of(out / "data" / f"{task}.jsonl"))
        for method in ("smart", "no_retrieval", "vanilla_rag"):
            assert json.loads((out / "eval" / f"{task}_{method}.metrics.json").read_text())["n"] == 30
    table = (out / "results_table.md").read_text()
    assert table in done.stdout and table.count("\n") == 2 + 3 and "PubHealth" in table
