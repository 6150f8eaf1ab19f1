"""smart/evaluation/paper.py: the published numbers of both paper versions and the side-by-side rendering of Tables 2-4."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from smart.evaluation import paper
from smart.evaluation.paper import paper_table

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = REPO.parent / "shared" / "eval_protocol.md"

# one number per row of every table (each from eval_protocol.md), both versions
SPOT_CHECKS = [
    ("aaai", "table2", "smart", "asqa", "mauve", 91.47),
    ("aaai", "table2", "selfrag", "squad", "score", 22.39),
    ("aaai", "table2", "modular", "asqa", "rouge_l", 36.49),
    ("aaai", "table2", "vanilla_rag", "pubhealth", "score", 29.52),
    ("aaai", "table2", "no_retrieval", "arc_c", "score", 47.95),
    ("aaai", "table2", "chatgpt", "arc_c", "score", 77.3),
    ("aaai", "table3", "train_full", "arc_c", "score", 60.22),
    ("aaai", "table3", "train_no_locator", "asqa", "str_em", 34.77),
    ("aaai", "table3", "train_no_intent", "popqa", "score", 35.17),
    ("aaai", "table3", "train_generator_only", "pubhealth", "score", 57.95),
    ("aaai", "table3", "infer_full", "asqa", "str_em", 41.16),
    ("aaai", "table3", "infer_no_locator", "popqa", "score", 37.45),
    ("aaai", "table3", "infer_no_intent", "arc_c", "score", 60.11),
    ("aaai", "table3", "infer_generator_only", "popqa", "score", 16.79),
    ("aaai", "table4", "vanilla", "asqa", "rouge_l", 6.45),
    ("aaai", "table4", "short", "pubhealth", "score", 62.00),
    ("aaai", "table4", "long", "pubhealth", "score", 72.9),
    ("aaai", "table4", "short_long", "asqa", "str_em", 41.16),
    ("preprint", "table2", "smart", "pubhealth", "score", 75.99),
    ("preprint", "table2", "smart", "arc_c", "score", 72.81),
    ("preprint", "table2", "smart", "popqa", "score", 47.66),
    ("preprint", "table2", "smart", "squad", "score", 33.05),
]


@pytest.mark.parametrize("version,table,row,task,metric,value", SPOT_CHECKS)
def test_spot_checks(version, table, row, task, metric, value):
    assert paper.published(table, row, task, metric, version) == value


def test_every_row_is_spot_checked_and_every_aaai_row_is_complete():
    checked = {(t, r) for v, t, r, *_ in SPOT_CHECKS if v == "aaai"}
    assert checked == {(t.key, row.key) for t in paper.TABLES.values() for row in t.rows}
    for table in paper.TABLES.values():
        assert set(paper.PUBLISHED["aaai"][table.key]) == {row.key for row in table.rows}
        for version in paper.VERSIONS:
            for numbers in paper.PUBLISHED[version].get(table.key, {}).values():
                assert len(numbers) == len(table.columns)


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in re.findall(r"\d+(?:\.\d+)?", text))


def _named_numbers(text: str, names: dict[str, str]) -> dict[str, tuple[float, ...]]:
    """names[name] -> the numbers after that name in a sentence like "full 72.15 / 60.22; w/o ... 70.13 / ..."."""
    pattern = rf"({'|'.join(map(re.escape, names))}) (\d[\d. /]*\d)"  # longest names first where they overlap
    return {names[name]: _numbers(numbers) for name, numbers in re.findall(pattern, text)}


def _protocol_numbers() -> dict[tuple[str, str, str], tuple[float | None, ...]]:
    """(version, table, row) -> numbers, parsed from eval_protocol.md's Table 2 and its sentences on the others."""
    text = PROTOCOL.read_text()
    titles = {row.paper: row.key for row in paper.TABLES["table2"].rows}
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in titles:
            out["aaai", "table2", titles[cells[0]]] = _numbers(" ".join(cells[1:]))
    preprint = re.search(r"reported SMART at (.*?); the AAAI", text).group(1)
    out["preprint", "table2", "smart"] = _numbers(preprint) + (None,) * 3
    table3 = text.split("Table 3")[1].split("Table 4")[0]
    agents = {"full": "full", "w/o Fact Locator": "no_locator", "w/o Intent Reconstructor": "no_intent",
              "generator only": "generator_only"}
    for half, prefix in zip(table3.split("Inference ablation"), ("train", "infer")):
        for key, numbers in _named_numbers(half.split(":", 1)[1], agents).items():
            out["aaai", "table3", f"{prefix}_{key}"] = numbers
    stages = {"vanilla Llama-2-7B": "vanilla", "+ short & long": "short_long", "+ short": "short", "+ long": "long"}
    for key, numbers in _named_numbers(text.split("Table 4")[1].split("\n")[0], stages).items():
        out["aaai", "table4", key] = numbers
    return out


@pytest.mark.skipif(not PROTOCOL.exists(), reason="../shared/eval_protocol.md is not in this checkout")
def test_every_published_number_equals_the_protocol():
    expected = _protocol_numbers()
    stored = {(v, t, r): numbers for v, tables in paper.PUBLISHED.items() for t, rows in tables.items()
              for r, numbers in rows.items()}
    assert stored == expected


def test_the_papers_own_repeats_agree():
    """SMART's Table 2 row reappears as Table 3's inference 'full' and Table 4's 'short & long'."""
    for table, row in (("table3", "infer_full"), ("table4", "short_long")):
        for (task, metric), value in paper.published_row(table, row).items():
            assert value == paper.published("table2", "smart", task, metric)


def test_published_lookups():
    assert paper.published("table2", "smart", "asqa", "score") == 41.16  # ASQA's score is its str-em
    assert paper.published("table4", "vanilla", "arc_c", "score") is None  # Table 4 has no ARC-C column
    assert paper.published("table2", "smart", "qa", "score") is None
    assert paper.published("table2", "smart", "asqa", "mauve", version="preprint") is None
    assert paper.published("table2", "chatgpt", "popqa", "score", version="preprint") is None


@pytest.mark.parametrize("call,message", [
    (lambda: paper.published("table5", "smart", "popqa", "score"), "unknown paper table 'table5'"),
    (lambda: paper.published("table2", "train_full", "popqa", "score"), "unknown table2 row(s) train_full"),
    (lambda: paper.published("table2", "smart", "popqa", "score", version="v2"), "unknown paper version 'v2'"),
    (lambda: paper.render_table("table9", {}), "unknown paper table 'table9'"),
    (lambda: paper.render_table("table3", {"smart": {}}), "ours: unknown table3 row(s) smart"),
    (lambda: paper.render_table("table2", {}, version="arxiv"), "unknown paper version 'arxiv'"),
    (lambda: paper.render_table("table2", {}, row_titles={"ours": "x"}), "row_titles: unknown table2 row(s) ours"),
    (lambda: paper.render_table("table2", {"smart": {"popqa": {"task": "squad", "score": 1.0}}}),
     "holds the metrics of task 'squad'"),
])
def test_unknown_names_raise(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def metrics(task: str, **values) -> dict:
    """A metrics JSON as eval/run_eval.py writes it (the fields render_table reads)."""
    return {"task": task, "method": "smart", "n": 50, **values}


def test_render_table4_in_the_papers_layout():
    ours = {"vanilla": {"popqa": metrics("popqa", score=26.0)},
            "short_long": {"popqa": metrics("popqa", score=74.0), "pubhealth": metrics("pubhealth", score=64.0),
                           "arc_c": metrics("arc_c", score=76.0)}}  # Table 4 has no ARC-C column: not shown
    text = paper.render_table("table4", ours, settings={"model": "SmolLM2-135M", "data": "demo dev, 50 per task"},
                              row_titles={"vanilla": "SmolLM2-135M, untrained"})
    assert text == """\
**Table 4: training stages** — Strict protocol (ours): ours / published (ours - published)

| Paper | Ours | PubHealth (accuracy) | PopQA (match) |
|---|---|---:|---:|
| Llama-2-7B (vanilla) | SmolLM2-135M, untrained | – / 9.80 | 26.0 / 22.69 (+3.3) |
| + short-trajectory learning | Stage 1 only (short trajectories) | – / 62.00 | – / 32.23 |
| + long-trajectory learning | Stage 2 only (long trajectories) | – / 72.90 | – / 37.66 |
| + short & long (SMART) | Stage 1 then stage 2 (SMART) | 64.0 / 73.18 (-9.2) | 74.0 / 42.60 (+31.4) |

published: AAAI 2025 (arXiv v3), Llama-2-7B

- model: SmolLM2-135M
- data: demo dev, 50 per task
"""


def test_render_table3_groups_its_halves_and_counts_fallbacks():
    ours = {"infer_full": {"asqa": metrics("asqa", score=30.0, str_em=30.0, rouge_l=25.5, fallbacks={"intent": 2}),
                           "popqa": metrics("popqa", score=60.0, fallbacks={"locator": 1})},
            "infer_no_locator": {"asqa": metrics("asqa", score=20.0, str_em=20.0, fallbacks={})}}
    lines = paper.render_table("table3", ours).splitlines()
    assert lines[2] == "| Paper | Ours | PopQA (match) | ASQA (str-em) | fallbacks (ours) |"
    assert lines[4] == f"| *{paper.TRAINING_ABLATION}* |  |  |  |  |"
    assert lines[5] == "| Full | Trained on long trajectories only (all agents) | – / 37.27 | – / 36.10 | – |"
    assert lines[9] == f"| *{paper.INFERENCE_ABLATION}* |  |  |  |  |"
    assert lines[10] == "| Full | SMART at inference (all agents) | 60.0 / 42.60 (+17.4) | 30.0 / 41.16 (-11.2) | 3 |"
    assert lines[11].endswith("| – / 37.45 | 20.0 / 36.10 (-16.1) | 0 |")
    assert "fallbacks" not in paper.render_table("table3", {"infer_no_locator": ours["infer_no_locator"]})


def test_columns_without_ours_are_dropped_unless_all_columns():
    ours = {"smart": {"asqa": metrics("asqa", score=30.0, str_em=30.0, rouge_l=25.5)}}  # no MAUVE measured
    header = paper.render_table("table2", ours).splitlines()[2]
    assert header == "| Paper | Ours | ASQA (str-em) | ASQA (ROUGE-L) |"
    full = paper.render_table("table2", ours, all_columns=True).splitlines()
    assert full[2].count("|") == 10 and "ASQA (MAUVE)" in full[2]
    assert full[5] == ("| SelfRAG-7B | – | – / 68.99 | – / 65.52 | – / 40.67 | – / 22.39 | – / 28.68 | – / 34.11 "
                       "| – / 83.00 |")
    assert full[4].endswith("| 30.0 / 41.16 (-11.2) | 25.5 / 40.66 (-15.2) | – / 91.47 |")


def test_preprint_shows_absent_numbers_as_missing():
    ours = {"smart": {t: metrics(t, score=50.0) for t in ("pubhealth", "popqa")},
            "vanilla_rag": {"popqa": metrics("popqa", score=40.0)}}
    lines = paper.render_table("table2", ours, version="preprint").splitlines()
    assert lines[4] == "| SMART | SMART (trained, 4 agents) | 50.0 / 75.99 (-26.0) | 50.0 / 47.66 (+2.3) |"
    assert lines[7] == ("| VANILLA-7B (retrieval) | Backbone + the same top-3 passages (vanilla RAG) "
                        "| – / – | 40.0 / – |")
    assert lines[-1] == "published: earlier arXiv preprint, Llama-2-7B"


def test_make_table_prints_the_chosen_version(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_table", REPO / "eval" / "make_table.py")
    make_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_table)
    run = tmp_path / "popqa_smart.metrics.json"
    metrics = {"task": "popqa", "method": "smart", "model": "out/smart", "score": 74.0, "n": 50,
               "protocols": {"paper": {"score": 70.0, "n": 50, "ci95": [56.0, 82.0]}}}
    run.write_text(json.dumps(metrics))
    assert make_table.main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == (f"Strict protocol (ours)\n\n{paper_table([metrics])}\n\n"
                                               f"Paper protocol (Self-RAG / ALCE scoring)\n\n"
                                               f"{paper_table([metrics], protocol='paper')}")
    assert make_table.main(["--paper_version", "preprint", str(run)]) == 0
    preprint = capsys.readouterr().out.strip()
    assert preprint.endswith("| SMART (published, earlier arXiv preprint) | Llama-2-7B | 47.66 |")
    assert "| SMART (trained, 4 agents) | smart | 70.0 [56.0, 82.0] (n=50) |" in preprint
