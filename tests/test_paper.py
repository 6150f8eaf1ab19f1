"""smart/evaluation/paper.py: the published numbers of both paper versions and the side-by-side rendering of Tables 2-4
(our cells with their 95% CI and n, the paired block of each table's comparisons)."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from smart.evaluation import paper, protocols, report
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
**Table 4: training stages** — Strict protocol (ours): ours [95% CI] (n=items) / published (ours - published)

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


# --- 95% CIs in the cells and the paired block (the "n and 95% CIs, and paired CIs for the comparisons")

def scored_run(task: str, method: str, scores: dict[str, tuple[int, int]]) -> tuple[dict, list[dict]]:
    """A metrics JSON as metrics.aggregate writes it and its prediction rows; scores: id -> (strict, paper)."""
    rows = [{"id": key, "score": strict, "paper_score": paper_score} for key, (strict, paper_score) in scores.items()]
    summaries = {p: protocols.summary([r[protocols.SCORE_FIELDS[p]] for r in rows]) for p in protocols.PROTOCOLS}
    top = {k: v for k, v in summaries["strict"].items() if k != "ci95"}
    return {"task": task, "method": method, **top, "protocols": summaries}, rows


def write_run(folder: Path, task: str, method: str, scores: dict[str, tuple[int, int]]) -> None:
    """`<task>_<method>.metrics.json` and `<task>_<method>.jsonl` in `folder`, as eval/run_eval.py leaves them."""
    metrics, rows = scored_run(task, method, scores)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{task}_{method}.metrics.json").write_text(json.dumps(metrics))
    (folder / f"{task}_{method}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


# SMART and vanilla RAG on 8 PopQA items; SMART has q9 besides, vanilla RAG q10: the pair joins q1..q8 by id
SMART_POPQA = {"q1": (1, 1), "q2": (1, 0), "q3": (1, 1), "q4": (0, 0), "q5": (1, 1), "q6": (1, 1), "q7": (1, 0),
               "q8": (1, 1), "q9": (0, 0)}
VANILLA_POPQA = {"q10": (1, 1), "q8": (0, 0), "q7": (0, 0), "q6": (1, 1), "q5": (0, 0), "q4": (0, 0), "q3": (1, 0),
                 "q2": (0, 0), "q1": (0, 0)}


def test_cells_show_the_ci_and_n_where_the_metrics_have_them():
    assert paper.cell(44.5, 42.6, [37.5, 51.5], 200) == "44.5 [37.5, 51.5] (n=200) / 42.60 (+1.9)"
    assert paper.cell(44.5, 42.6) == "44.5 / 42.60 (+1.9)"  # an older metrics JSON: the score alone
    assert paper.cell(44.5, None, [37.5, 51.5], 200) == "44.5 [37.5, 51.5] (n=200) / –"
    assert paper.cell(None, 42.6) == "– / 42.60"
    ours = {"smart": {"asqa": {"task": "asqa", "score": 30.0, "str_em": 30.0, "rouge_l": 25.5, "n": 4,
                               "protocols": {"strict": {"score": 30.0, "str_em": 30.0, "rouge_l": 25.5, "n": 4,
                                                        "ci95": [10.0, 50.0]},
                                             "paper": {"score": 20.0, "str_em": 20.0, "rouge_lsum": 22.0, "n": 4,
                                                       "ci95": [0.0, 40.0]}}}}}
    strict, paper_protocol = (paper.render_table("table2", ours, protocol=p).splitlines()[4] for p in ("strict", "paper"))
    # the CI and n belong to the main score (ASQA's str-em), not to ROUGE-L
    assert strict.endswith("| 30.0 [10.0, 50.0] (n=4) / 41.16 (-11.2) | 25.5 / 40.66 (-15.2) |")
    assert paper_protocol.endswith("| 20.0 [0.0, 40.0] (n=4) / 41.16 (-21.2) | 22.0 / 40.66 (-18.7) |")


def test_paired_difference_joins_by_id_under_each_protocol():
    (_, smart), (_, vanilla) = scored_run("popqa", "smart", SMART_POPQA), scored_run("popqa", "vanilla_rag", VANILLA_POPQA)
    strict = paper.paired_difference("popqa", smart, vanilla)
    assert (strict.n, strict.row, strict.reference, strict.difference) == (8, 87.5, 25.0, 62.5)
    assert strict.ci == (25.0, 87.5) and strict.reading == "CI above zero"  # 5 of the 8 differences +1, the rest 0
    loose = paper.paired_difference("popqa", smart, vanilla, "paper")
    assert (loose.n, loose.row, loose.reference, loose.difference) == (8, 62.5, 12.5, 50.0)
    assert loose.ci == (12.5, 87.5)
    # the same numbers as the quickstart report's SMART − vanilla RAG
    evaluations = [report.Evaluation("popqa", m, {}, rows) for m, rows in (("smart", smart), ("vanilla_rag", vanilla))]
    for protocol, ours in (("strict", strict), ("paper", loose)):
        (theirs,) = report.paired(evaluations, protocol)
        assert (theirs.n, theirs.row, theirs.reference, theirs.ci) == (ours.n, ours.row, ours.reference, ours.ci)
    old = [{"id": r["id"], "score": r["score"]} for r in vanilla]  # predictions written before the paper protocol
    assert paper.paired_difference("popqa", smart, old, "paper") is None
    assert paper.paired_difference("popqa", smart, [{"id": "x", "score": 1, "paper_score": 1}]) is None  # no shared id


def test_the_table_command_prints_cis_and_the_paired_block(tmp_path, monkeypatch, capsys):
    """scripts/paper_tables.py table2 --render_only on a run folder with SMART and vanilla RAG on PopQA."""
    for name in ("QUICK", "DEMO_DATA", "N_DEV", "PAPER", "TASKS"):
        monkeypatch.delenv(name, raising=False)
    run = tmp_path / "run"
    monkeypatch.setenv("RUN_DIR", str(run))
    write_run(run / "eval", "popqa", "smart", SMART_POPQA)
    write_run(run / "eval", "popqa", "vanilla_rag", VANILLA_POPQA)
    spec = importlib.util.spec_from_file_location("paper_tables", REPO / "scripts" / "paper_tables.py")
    paper_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paper_tables)
    paper_tables.main(["table2", "--render_only"])
    out = capsys.readouterr().out
    text = (run / "tables" / "table2.md").read_text()
    assert text in out
    paper_part, strict_part = text.split("**Table 2: main results** — Strict protocol (ours)")
    assert "| SMART | SMART (trained, 4 agents) | 55.6 [22.2, 88.9] (n=9) / 42.60 (+13.0) |" in paper_part
    assert ("| VANILLA-7B (retrieval) | Backbone + the same top-3 passages (vanilla RAG) "
            "| 22.2 [0.0, 55.6] (n=9) / 37.52 (-15.3) |") in paper_part
    assert "| SMART | SMART (trained, 4 agents) | 77.8 [44.4, 100.0] (n=9) / 42.60 (+35.2) |" in strict_part
    assert ("| VANILLA-7B (retrieval) | Backbone + the same top-3 passages (vanilla RAG) "
            "| 33.3 [11.1, 66.7] (n=9) / 37.52 (-4.2) |") in strict_part
    assert paper_part.split("published: AAAI 2025 (arXiv v3), Llama-2-7B\n\n")[1] == """\
**Paired** — Paper protocol (Self-RAG / ALCE scoring): row − reference, in points, on the items both answered \
(matched by id), with a paired bootstrap 95% CI

| Comparison | Task | n | row % | reference % | row − reference [95% CI] | reading |
|---|---|---:|---:|---:|---:|---|
| SMART − VANILLA-7B (retrieval) | PopQA (match) | 8 | 62.5 | 12.5 | +50.0 [12.5, 87.5] | CI above zero |

"""
    assert ("| SMART − VANILLA-7B (retrieval) | PopQA (match) | 8 | 87.5 | 25.0 | +62.5 [25.0, 87.5] "
            "| CI above zero |") in strict_part


def test_table3_pairs_each_ablation_with_its_full_model():
    full = {f"q{i}": (1, 1) for i in range(1, 7)}
    ablated = {**full, "q1": (0, 0), "q2": (0, 0), "q3": (0, 0), "q4": (0, 0), "q5": (0, 0), "q6": (0, 1)}
    predictions = {row: {"popqa": scored_run("popqa", "smart", scores)[1]} for row, scores in (
        ("train_full", full), ("train_no_locator", {**full, "q3": (0, 1)}),
        ("infer_full", full), ("infer_generator_only", ablated), ("infer_no_intent", full))}
    predictions["train_no_intent"] = {"arc_c": predictions["train_full"]["popqa"]}  # train_full has no ARC-C run
    assert paper.paired_block("table3", predictions, "strict") == f"""\
**Paired** — Strict protocol (ours): row − reference, in points, on the items both answered (matched by id), with \
a paired bootstrap 95% CI

| Comparison | Task | n | row % | reference % | row − reference [95% CI] | reading |
|---|---|---:|---:|---:|---:|---|
| *{paper.TRAINING_ABLATION}* |  |  |  |  |  |  |
| w/o Fact Locator − Full | PopQA (match) | 6 | 83.3 | 100.0 | -16.7 [-50.0, 0.0] | CI spans zero |
| *{paper.INFERENCE_ABLATION}* |  |  |  |  |  |  |
| w/o Intent Reconstructor − Full | PopQA (match) | 6 | 100.0 | 100.0 | +0.0 [0.0, 0.0] | CI spans zero |
| Generator only − Full | PopQA (match) | 6 | 0.0 | 100.0 | -100.0 [-100.0, -100.0] | CI below zero |
"""
    paper_block = paper.paired_block("table3", predictions, "paper")
    assert "| Generator only − Full | PopQA (match) | 6 | 16.7 | 100.0 | -83.3 [-100.0, -50.0] | CI below zero |" in paper_block
    assert "| w/o Fact Locator − Full | PopQA (match) | 6 | 100.0 | 100.0 | +0.0 [0.0, 0.0] | CI spans zero |" in paper_block


def test_table4_pairs_each_stage_with_short_and_long_and_says_when_nothing_pairs():
    assert paper.COMPARISONS["table4"] == (("vanilla", "short_long"), ("short", "short_long"), ("long", "short_long"))
    assert paper.COMPARISONS["table2"] == (("smart", "modular"), ("smart", "vanilla_rag"), ("smart", "no_retrieval"))
    predictions = {"short_long": {"pubhealth": scored_run("pubhealth", "smart", {"a": (1, 1), "b": (1, 1)})[1]},
                   "short": {"pubhealth": scored_run("pubhealth", "smart", {"a": (0, 0), "b": (1, 1)})[1]}}
    text = paper.render_table("table4", {}, predictions=predictions)
    assert text.endswith("| + short-trajectory learning − + short & long (SMART) | PubHealth (accuracy) | 2 | 50.0 "
                         "| 100.0 | -50.0 [-100.0, 0.0] | CI spans zero |\n")
    assert paper.paired_block("table4", {"short": predictions["short"]}).endswith(
        "\n\nno comparison has per-item scores on both sides yet\n")
    with pytest.raises(ValueError, match="predictions: unknown table4 row"):
        paper.paired_block("table4", {"smart": {}})
