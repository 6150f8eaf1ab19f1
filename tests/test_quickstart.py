"""The main job end to end at its smallest size: every stage runs for real, a rerun only prints the table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_quickstart(run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RUN_DIR": str(run_dir), "MAX_ARTICLES": "150", "N_TRAIN": "8", "N_DEV": "3",
           "MAX_STEPS": "2", "NO_VLLM": "1", "PRECISION": "no", "MAX_NEW_TOKENS": "16", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "scripts/quickstart.py"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)


@pytest.mark.slow
def test_quickstart_smallest_size(tmp_path, embedded_llm_dir):
    run_dir = tmp_path / "run"
    first = run_quickstart(run_dir)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    for stage in ("stage1", "stage2"):
        assert (run_dir / stage / "merged" / "config.json").exists()
        assert list((run_dir / stage).rglob("training_log.jsonl")), f"{stage} wrote no training log"
    metrics = {p.name: json.loads(p.read_text()) for p in (run_dir / "eval").glob("*.metrics.json")}
    assert set(metrics) == {f"{task}_{method}.metrics.json" for task in ("popqa", "pubhealth", "arc_c")
                            for method in ("smart", "no_retrieval", "vanilla_rag", "modular")}
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
    assert table.count("\n") == 2 + 4 and "SMART" in table and "Average" in table

    again = run_quickstart(run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": cached") == len(list((run_dir / "stages").glob("*.json")))
    assert table in again.stdout
