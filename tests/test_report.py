"""The quickstart report on a hand-made run folder: Table 2 under both protocols, per-agent diagnostics, examples,
plots."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from smart.evaluation.report import AVERAGE, Evaluation, load_evaluations, paired, paired_table, results_table, write_report


def fact(index: int, relevant: bool) -> dict:
    return {"index": index, "relevant": relevant, "title": f"T{index}", "text": "fact" if relevant else ""}


def row(key: str, method: str, score: float, *, passages: int = 3, facts: tuple = (), gold=None,
        citations: tuple = (), fallbacks: tuple = (), problems: tuple = (), paper: float | None = None) -> dict:
    """A prediction row as eval/run_eval.py writes it; `gold` is `gold_passages` and `paper` the paper protocol's
    `paper_score` (each absent when None: rows written before the field)."""
    out = {"id": key, "question": f"question {key}?", "method": method, "queries": [f"query {key}"],
           "passages": [{"id": f"{key}-{i}", "title": f"T{i}"} for i in range(1, passages + 1)],
           "facts": list(facts), "answer": f"answer {key}", "citations": list(citations),
           "fallbacks": list(fallbacks), "problems": list(problems), "trajectory": f"trajectory of {key}",
           "golds": [f"gold {key}"], "score": score}
    if method in ("smart", "modular"):
        out["intent_output"] = "Search(q)</eor>"
        if passages:
            out["locator_output"] = "[Relevant]: [1] T1</eol>"
    if gold is not None:
        out["gold_passages"] = gold
    if paper is not None:
        out["paper_score"] = paper
    return out


POPQA_SMART = [  # p3 first: the examples show cited rows first
    # correct, locator and generator fallbacks
    row("p3", "smart", 1.0, gold=[2], fallbacks=("locator", "generator"), paper=0.0,
        problems=("locator: missing </eol>", "generator: missing </eog>")),
    # wrong, intent fallback, relevant passage not a gold one, one citation right and one wrong
    row("p2", "smart", 0.0, facts=(fact(1, False), fact(2, True), fact(3, False)), gold=[1, 3], citations=(2, 3),
        fallbacks=("intent",), problems=("intent: no Search(...)",), paper=0.0),
    # correct, clean, cites its gold passage
    row("p1", "smart", 1.0, facts=(fact(1, True), fact(2, False), fact(3, False)), gold=[1], citations=(1,),
        paper=1.0),
    # wrong, no passage retrieved: no locator step, no gold passage
    row("p4", "smart", 0.0, passages=0, gold=[], paper=0.0),
    # wrong, no passage holds the answer, an intent problem without fallback, a citation of a non-gold passage
    row("p5", "smart", 0.0, facts=(fact(1, False), fact(2, False), fact(3, True)), gold=[], citations=(3,),
        problems=("intent: missing </eor>",), paper=0.0),
]
PUBHEALTH_SMART = [  # no answer strings: no gold passages (None, or absent); claim-vs-fact answers
    {**row("h1", "smart", 1.0, facts=(fact(1, True), fact(2, False), fact(3, False)), citations=(1,)),
     "answer": "Claim: fever | Fact: fever | Verdict: true"},
    {**row("h2", "smart", 0.0, facts=(fact(1, False), fact(2, True), fact(3, False))), "gold_passages": None,
     "answer": "Claim: the Flu | Fact: flu | Verdict: false"},  # the spans agree, the verdict word does not
    row("h3", "smart", 0.0, facts=(fact(1, False), fact(2, False), fact(3, False))),  # no comparison: not counted
]
ARC_MODULAR = [
    row("a1", "modular", 1.0, facts=(fact(1, True), fact(2, False), fact(3, False)), gold=[1]),
    row("a2", "modular", 0.0, gold=[2], fallbacks=("locator",), problems=("locator: no [Relevant]/[Irrelevant] line",)),
    row("a3", "modular", 0.0, gold=[], fallbacks=("locator",), problems=("locator: no [Relevant]/[Irrelevant] line",)),
]


def write_eval(run: Path, stem: str, task: str, method: str, score: float, rows: list[dict], fallbacks: dict) -> None:
    """Predictions and metrics; the metrics hold both protocols where the rows hold `paper_score`."""
    (run / "eval" / f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = {"task": task, "method": method, "model": "m", "score": score, "n": len(rows), "fallbacks": fallbacks,
               "unparsed": 0, "settings": {"ndocs": 3}}
    if all("paper_score" in r for r in rows):
        paper = 100 * sum(r["paper_score"] for r in rows) / len(rows)
        metrics["protocols"] = {"strict": {"score": score, "n": len(rows), "ci95": None},
                                "paper": {"score": paper, "n": len(rows), "ci95": None}}
    (run / "eval" / f"{stem}.metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    (tmp_path / "eval").mkdir()
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "eval_smart.json").write_text(json.dumps({"seconds": 12.4}))
    write_eval(tmp_path, "popqa_smart", "popqa", "smart", 40.0, POPQA_SMART,
               {"intent": 1, "locator": 1, "generator": 1})
    write_eval(tmp_path, "pubhealth_smart", "pubhealth", "smart", 100 / 3, PUBHEALTH_SMART, {})
    write_eval(tmp_path, "popqa_no_retrieval", "popqa", "no_retrieval", 20.0,
               [row(f"n{i}", "no_retrieval", float(i == 0), passages=0, gold=[]) for i in range(5)], {})
    # the same items as SMART's (by id, in another order): p1-p3 right; PubHealth: h1 and h2 of SMART's three, wrong
    write_eval(tmp_path, "popqa_vanilla_rag", "popqa", "vanilla_rag", 60.0,
               [row(f"p{i}", "vanilla_rag", float(i <= 3), gold=[1], paper=float(i <= 4)) for i in range(1, 6)], {})
    write_eval(tmp_path, "pubhealth_vanilla_rag", "pubhealth", "vanilla_rag", 0.0,
               [row(f"h{i}", "vanilla_rag", 0.0) for i in (1, 2)], {})
    # grouped by the fields inside the metrics, whatever the file is called
    write_eval(tmp_path, "something_else", "arc_c", "modular", 100 / 3, ARC_MODULAR, {"locator": 2})
    return tmp_path


TABLE = """\
| Method | PopQA (match) | PubHealth (accuracy) | ARC-C (accuracy) | Average | fallbacks |
|---|---:|---:|---:|---:|---:|
| SMART (trained, 4 agents) | 40.0 [0.0, 80.0] (n=5) | 33.3 [0.0, 100.0] (n=3) | – | – | 3 |
| Backbone alone (no retrieval) | 20.0 [0.0, 60.0] (n=5) | – | – | – | 0 |
| Backbone + the same top-3 passages (vanilla RAG) | 60.0 [20.0, 100.0] (n=5) | 0.0 [0.0, 0.0] (n=2) | – | – | 0 |
| Prompted modular agents (same backbone, no training) | – | – | 33.3 [0.0, 100.0] (n=3) | – | 2 |
"""
PAPER_TABLE = """\
| Method | PopQA (match) | PubHealth (match) | ARC-C (match) | Average | fallbacks |
|---|---:|---:|---:|---:|---:|
| SMART (trained, 4 agents) | 20.0 [0.0, 60.0] (n=5) | – | – | – | 3 |
| Backbone alone (no retrieval) | – | – | – | – | 0 |
| Backbone + the same top-3 passages (vanilla RAG) | 80.0 [40.0, 100.0] (n=5) | – | – | – | 0 |
| Prompted modular agents (same backbone, no training) | – | – | – | – | 2 |
"""
PAIRED = """\
| Task | n | SMART % | vanilla RAG % | SMART − vanilla RAG [95% CI] | reading |
|---|---:|---:|---:|---:|---|
| PopQA (match) | 5 | 40.0 | 60.0 | -20.0 [-60.0, 0.0] | within noise: the 95% CI includes zero |
| PubHealth (accuracy) | 2 | 50.0 | 0.0 | +50.0 [0.0, 100.0] | within noise: the 95% CI includes zero |
| Average over tasks | 7 | 45.0 | 30.0 | +15.0 [-20.0, 50.0] | within noise: the 95% CI includes zero |
"""


def test_results_table_rows_per_method_columns_per_task(run):
    evaluations = load_evaluations(run)
    assert results_table(evaluations) == TABLE
    without_arc = results_table([e for e in evaluations if e.task != "arc_c"]).splitlines()
    assert without_arc[0] == "| Method | PopQA (match) | PubHealth (accuracy) | Average | fallbacks |"
    assert without_arc[2:] == [  # the average's CI: each task's items resampled on their own
        "| SMART (trained, 4 agents) | 40.0 [0.0, 80.0] (n=5) | 33.3 [0.0, 100.0] (n=3) | 36.7 [10.0, 73.3] (n=8) "
        "| 3 |",
        "| Backbone alone (no retrieval) | 20.0 [0.0, 60.0] (n=5) | – | – | 0 |",
        "| Backbone + the same top-3 passages (vanilla RAG) | 60.0 [20.0, 100.0] (n=5) | 0.0 [0.0, 0.0] (n=2) "
        "| 30.0 [10.0, 50.0] (n=7) | 0 |"]


def test_paper_protocol_table_and_pairs_read_paper_scores(run):
    """Only the PopQA runs of SMART and vanilla RAG carry the paper protocol (rows and metrics): the other cells
    are missing, and the paired comparison under it has PopQA alone."""
    evaluations = load_evaluations(run)
    assert results_table(evaluations, "paper") == PAPER_TABLE
    pairs = paired(evaluations, "paper")
    assert [(p.task, p.n, p.row, p.reference, p.ci, p.reading) for p in pairs] == [
        ("popqa", 5, 20.0, 80.0, (-100.0, -20.0), "SMART behind")]
    assert "| PopQA (match) | 5 | 20.0 | 80.0 | -60.0 [-100.0, -20.0] | SMART behind:" in paired_table(pairs, "paper")


def test_interval_from_the_metrics_when_rows_lack_the_protocol():
    metrics = {"score": 50.0, "n": 4, "protocols": {"strict": {"score": 50.0, "n": 4, "ci95": [10.0, 90.0]},
                                                    "paper": {"score": 25.0, "n": 4, "ci95": [0.0, 75.0]}}}
    evaluation = Evaluation("popqa", "smart", metrics, [{"id": str(i), "score": float(i < 2)} for i in range(4)])
    assert results_table([evaluation], "paper").splitlines()[2] == \
        "| SMART (trained, 4 agents) | 25.0 [0.0, 75.0] (n=4) | 25.0 (n=4) | 0 |"  # the average needs the rows
    assert paired([evaluation, Evaluation("popqa", "vanilla_rag", metrics, evaluation.rows)], "paper") == []


def test_results_table_without_predictions_shows_no_interval(run):
    evaluations = [Evaluation(e.task, e.method, e.metrics, []) for e in load_evaluations(run)]
    smart = results_table(evaluations).splitlines()[2]
    assert smart == "| SMART (trained, 4 agents) | 40.0 (n=5) | 33.3 (n=3) | – | – | 3 |"


def scored(method: str, task: str, scores: list[float]) -> Evaluation:
    return Evaluation(task, method, {"score": 100 * sum(scores) / len(scores), "n": len(scores)},
                      [{"id": f"{task}{i}", "score": s} for i, s in enumerate(scores)])


def test_paired_reads_the_interval():
    ahead = paired([scored("smart", "popqa", [1.0] * 10), scored("vanilla_rag", "popqa", [0.0] * 10)])
    assert [(p.task, p.n, p.difference, p.ci, p.reading) for p in ahead] == [("popqa", 10, 100.0, (100.0, 100.0),
                                                                               "SMART ahead")]
    behind = paired([scored("smart", t, [0.0] * 8) for t in ("popqa", "arc_c")]
                    + [scored("vanilla_rag", t, [1.0] * 6 + [0.0] * 2) for t in ("popqa", "arc_c")])
    assert [p.task for p in behind] == ["popqa", "arc_c", AVERAGE] and behind[-1].n == 16
    assert behind[-1].difference == pytest.approx(-75.0) and behind[-1].ci[1] < 0
    assert {p.reading for p in behind} == {"SMART behind"}
    assert "| Average over tasks | 16 | 0.0 | 75.0 | -75.0 [" in paired_table(behind)
    assert paired([scored("smart", "popqa", [1.0]), scored("vanilla_rag", "arc_c", [0.0])]) == []  # no task in common


def ratio(hits: int, total: int) -> dict:
    return {"hits": hits, "total": total, "pct": pytest.approx(100 * hits / total) if total else None}


def test_report_files_and_diagnostics(run):
    write_report(run, {"backbone": "tiny"})
    assert (run / "results_table.md").read_text() == TABLE
    assert (run / "results_table_paper.md").read_text() == PAPER_TABLE
    written = json.loads((run / "diagnostics.json").read_text())
    diagnostics = {(d["task"], d["method"]): d for d in written["evaluations"]}
    assert list(diagnostics) == [("popqa", "smart"), ("pubhealth", "smart"), ("popqa", "no_retrieval"),
                                 ("popqa", "vanilla_rag"), ("pubhealth", "vanilla_rag"), ("arc_c", "modular")]
    assert diagnostics["popqa", "smart"] == {
        "task": "popqa", "method": "smart", "n": 5, "score": 40.0, "ci95": [0.0, 80.0], "paper_score": 20.0,
        "paper_ci95": [0.0, 60.0],
        "intent well-formed": ratio(3, 5),  # p2 fallback, p5 problem
        "locator well-formed": ratio(3, 4),  # p4 has no passages; p3 fallback
        "generator well-formed": ratio(4, 5),  # p3
        "locator hit on gold": ratio(1, 3),  # p1 of p1-p3 (p2 marked a non-gold passage relevant)
        "citation precision": ratio(2, 4),  # p1 [1] and p2 [3] of p1 [1], p2 [2, 3], p5 [3]
        "cites a gold passage": ratio(2, 3),  # p1, p2
        "verdict word follows comparison": ratio(0, 0),  # no claim answers
        "intent fallback": ratio(1, 5), "locator fallback": ratio(1, 5), "generator fallback": ratio(1, 5)}
    pubhealth = diagnostics["pubhealth", "smart"]
    assert pubhealth["intent well-formed"] == ratio(3, 3) and pubhealth["locator fallback"] == ratio(0, 3)
    assert pubhealth["verdict word follows comparison"] == ratio(1, 2)  # h1; h2's word says false
    for measure in ("locator hit on gold", "citation precision", "cites a gold passage"):
        assert pubhealth[measure] == ratio(0, 0)
    modular = diagnostics["arc_c", "modular"]
    assert modular["locator well-formed"] == ratio(1, 3) and modular["locator hit on gold"] == ratio(1, 2)
    assert modular["locator fallback"] == ratio(2, 3) and modular["citation precision"] is None
    assert modular["verdict word follows comparison"] is None
    baseline = diagnostics["popqa", "vanilla_rag"]
    assert baseline["score"] == 60.0 and baseline["ci95"] == [20.0, 100.0]
    assert baseline["paper_score"] == 80.0 and baseline["paper_ci95"] == [40.0, 100.0]
    assert baseline["n"] == 5 and all(v is None for k, v in baseline.items()
                                      if k not in ("task", "method", "n", "score", "ci95", "paper_score", "paper_ci95"))
    assert diagnostics["popqa", "no_retrieval"]["paper_score"] is None  # rows written before the paper protocol

    assert [(p["task"], p["n"], p["difference"], p["ci95"], p["reading"]) for p in written["smart_vs_vanilla_rag"]] == [
        ("popqa", 5, -20.0, [-60.0, 0.0], "within noise"), ("pubhealth", 2, 50.0, [0.0, 100.0], "within noise"),
        ("average", 7, 15.0, [-20.0, 50.0], "within noise")]
    assert [(p["task"], p["difference"], p["ci95"]) for p in written["smart_vs_vanilla_rag_paper"]] == [
        ("popqa", -60.0, [-100.0, -20.0])]

    report = (run / "report.md").read_text()
    assert TABLE in report and "## SMART − vanilla RAG (paired)" in report and PAIRED in report
    assert "### Paper protocol (Self-RAG / ALCE scoring)\n\n" + PAPER_TABLE in report
    assert "| eval_smart | 12 |" in report and "| backbone | `tiny` |" in report
    assert ("| SMART (trained, 4 agents) | PopQA (match) | 5 | 60.0 (3/5) | 75.0 (3/4) | 80.0 (4/5) | 33.3 (1/3) | "
            "50.0 (2/4) | 66.7 (2/3) | – | 20.0 (1/5) | 20.0 (1/5) | 20.0 (1/5) |") in report
    assert "| Backbone alone (no retrieval) | PopQA (match) | 5 |" + " – |" * 10 in report
    # examples: per task two correct SMART rows (cited first) and one wrong one
    shown = [key for key in ("p1", "p2", "p3", "p4", "p5", "h1", "h2", "h3") if f"trajectory of {key}" in report]
    assert shown == ["p1", "p2", "p3", "h1", "h2"]
    assert report.index("trajectory of p1") < report.index("trajectory of p3") < report.index("trajectory of p2")
    assert (run / "metrics.png").stat().st_size > 0


def test_same_task_and_method_twice_is_an_error(run):
    write_eval(run, "popqa_smart_rerun", "popqa", "smart", 0.0, POPQA_SMART, {})
    with pytest.raises(ValueError, match="popqa_smart_rerun.metrics.json"):
        load_evaluations(run)


def test_report_without_vanilla_rag_skips_the_paired_section(run):
    for path in (run / "eval").glob("*_vanilla_rag.*"):
        path.unlink()
    report = write_report(run, {}).read_text()
    assert "SMART − vanilla RAG" not in report and "| SMART (trained, 4 agents) | 40.0 [0.0, 80.0] (n=5) |" in report
    assert json.loads((run / "diagnostics.json").read_text())["smart_vs_vanilla_rag"] == []


def test_constant_answers_give_each_label_tasks_floor():
    from smart.evaluation.report import Evaluation, constant_answers

    claims = [{"id": str(i), "golds": [g], "label": "true", "score": float(g == "true")}
              for i, g in enumerate(["true", "true", "false", "true"])]
    choices = [{"id": str(i), "golds": [g], "label": None, "score": 0.0} for i, g in enumerate("ABBC")]
    opens = [{"id": "1", "golds": ["Paris"], "score": 1.0}]  # no label: match-scored, no floor
    evaluations = [Evaluation("pubhealth", "smart", {}, claims), Evaluation("pubhealth", "vanilla_rag", {}, claims[:1]),
                   Evaluation("arc_c", "smart", {}, choices), Evaluation("popqa", "smart", {}, opens)]
    assert constant_answers(evaluations) == {"pubhealth": ("true", 75.0), "arc_c": ("B", 50.0)}


def test_label_recall_is_the_mean_over_gold_labels():
    from smart.evaluation.report import Evaluation, diagnostics, label_recall, label_recall_table

    claims = [{**row(str(i), "smart", float(g == a)), "golds": [g], "label": a}
              for i, (g, a) in enumerate([("true", "true"), ("true", "true"), ("true", "false"), ("false", "true")])]
    opens = [row("1", "smart", 1.0)]
    evaluations = [Evaluation("pubhealth", "smart", {"score": 50.0}, claims),
                   Evaluation("popqa", "smart", {"score": 100.0}, opens)]
    [(e, counts, mean)] = label_recall(evaluations)  # open questions have no gold label
    assert e.task == "pubhealth" and counts == {"false": (0, 1), "true": (2, 3)} and mean == pytest.approx(100 / 3)
    assert "| SMART (trained, 4 agents) | PubHealth (accuracy) | `false` 0/1, `true` 2/3 | 33.3 |" in label_recall_table(
        evaluations)
    assert label_recall_table(evaluations[1:]) == []
    [written] = diagnostics(evaluations)["label_recall"]
    assert written == {"task": "pubhealth", "method": "smart", "mean": pytest.approx(100 / 3),
                       "right_of_items": {"false": [0, 1], "true": [2, 3]}}


def test_report_shows_the_contamination_counts(tmp_path):
    from smart.evaluation.report import contamination_section

    assert contamination_section(tmp_path) == []  # no check ran
    example = {"kinds": ["same_question", "ngram"], "eval_question": "Who wrote Emma?", "train_question": "who wrote emma"}
    (tmp_path / "contamination.json").write_text(json.dumps({
        "ngram": 8, "train": {"files": ["t.jsonl"], "records": 40, "questions": 10},
        "eval": [{"file": "popqa.jsonl", "task": "popqa", "n": 5, "same_question": 1, "same_id": 0, "ngram": 1, "any": 1,
                  "examples": [example]}]}))
    text = "\n".join(contamination_section(tmp_path))
    assert "| PopQA (match) | 5 | 1 | 0 | 1 | 1 |" in text
    assert "- PopQA (match): dev `Who wrote Emma?` ~ train `who wrote emma` (same_question, ngram)" in text
