"""Metric unit tests on hand-made cases: normalization, match, label parsing, str-em, ROUGE-L, tables."""
from __future__ import annotations

import pytest

from smart.evaluation import metrics
from smart.evaluation.metrics import (accuracy, compared_verdict, match, normalize_answer, parse_choice, parse_true_false,
                           str_em)
from smart.evaluation.paper import paper_table

CHOICES = {"A": "Planetary density will decrease.", "B": "Planetary years will become longer.",
           "C": "Planetary days will become shorter.", "D": "Planetary gravity will become stronger."}


def test_normalize_answer():
    assert normalize_answer("  The Eiffel-Tower, in PARIS!  ") == "eiffeltower in paris"
    assert normalize_answer("An apple a day") == "apple day"


@pytest.mark.parametrize("prediction,golds,expected", [
    ("The capital is Pristina.", ["Pristina"], 1.0),
    ("pristina", ["Prishtina", "PRISTINA"], 1.0),
    ("It is Belgrade.", ["Pristina"], 0.0),
    ("He was a politician and soldier", ["politician"], 1.0),
    ("Seinefeld", ["Seine"], 0.0),  # word boundaries: no match inside another word
    ("", ["Seine"], 0.0),
    ("anything", [""], 0.0),  # an empty gold never matches
])
def test_match(prediction, golds, expected):
    assert match(prediction, golds) == expected


@pytest.mark.parametrize("prediction,expected", [
    ("C", "C"), ("C: Planetary days will become shorter.", "C"), ("(C)", "C"), ("C.", "C"), ("C)", "C"),
    ("C\nbecause the planet spins faster", "C"), ("The answer is C.", "C"), ("The answer is (B)", "B"),
    ("Answer: D", "D"), ("I think option A is right", "A"),
    ("Planetary days will become shorter", "C"),  # the choice text itself
    ("planetary years will become longer, since...", "B"),
    ("A planet rotates", None),  # the article "A" is not a label
    ("I do not know", None), ("", None),
])
def test_parse_choice(prediction, expected):
    assert parse_choice(prediction, CHOICES) == expected


def test_parse_choice_earliest_choice_text_wins_and_digit_labels():
    choices = {"A": "ruler", "B": "balance", "C": "thermometer"}
    assert parse_choice("a balance, not a ruler", choices) == "B"
    assert parse_choice("anything", {}) is None


@pytest.mark.parametrize("prediction,expected", [
    ("true", "true"), ("False.", "false"), ("The statement is TRUE", "true"), ("SUPPORTS", "true"),
    ("refutes", "false"), ("This is incorrect.", "false"), ("It is not correct", "false"), ("correct", "true"),
    ("maybe", None), ("", None),
])
def test_parse_true_false(prediction, expected):
    assert parse_true_false(prediction) == expected


@pytest.mark.parametrize("prediction,expected", [
    ("Claim: Anopheles mosquitoes | Fact: Anopheles mosquitoes | Verdict: false", "false"),  # the word, not the spans
    ("Claim: steroid drug | Fact: nonsteroidal drug | Verdict: true", "true"),
    ("Claim: true love | Fact: false alarm | Verdict: false", "false"),  # verdict words inside the spans: not read
    ("Claim: false alarm | Fact: false alarm | Verdict: true\n[Cite]: [1]", "true"),
    ("Claim: true love | Fact: true love\nVerdict: refutes", "false"),  # the field on its own line
    ("Claim: samurai | Fact: true\n[Cite]: [1]", None),  # spans without a verdict: no verdict written
    ("Claim: fever | Fact: | Verdict: true", "true"),
    ("False. The flu is caused by viruses.", "false"), ("Claim: Kenya", None),
])
def test_claim_answers_are_read_by_their_verdict_word(prediction, expected):
    assert parse_true_false(prediction) == expected
    assert accuracy(prediction, "true") == (float(expected == "true"), expected)


def test_claim_scores_are_the_written_verdict_not_the_span_comparison():
    answer = "Claim: Paris | Fact: Paris | Verdict: false"  # the spans agree, the model says false
    assert accuracy(answer, "true") == (0.0, "false")
    assert accuracy(answer, "false") == (1.0, "false")
    assert compared_verdict(answer) == "true"  # the comparison stays a diagnostic


def test_compared_verdict_only_reads_comparisons():
    assert compared_verdict("Claim: a microbe | Fact: the Microbe. | Verdict: false") == "true"  # normalized spans
    assert compared_verdict("Claim: steroid drug | Fact: nonsteroidal drug") == "false"
    assert compared_verdict("Claim: fever | Fact: | Verdict: true") is None  # an empty span compares nothing
    assert compared_verdict("true") is None


def test_accuracy_counts_unparseable_as_wrong():
    assert accuracy("true", "true") == (1.0, "true")
    assert accuracy("refutes", "false") == (1.0, "false")
    assert accuracy("true", "false") == (0.0, "true")
    assert accuracy("no idea", "true") == (0.0, None)
    assert accuracy("B: Planetary years", "C", CHOICES) == (0.0, "B")
    assert accuracy("(C)", "C", CHOICES) == (1.0, "C")


def test_choice_answers_score_by_their_text_then_their_label():
    from smart.data.convert import choice_answer

    for label, text in CHOICES.items():  # the format trained answers take: the text, then the label
        assert accuracy(choice_answer(label, text), label, CHOICES) == (1.0, label)
    assert accuracy(choice_answer("C", "a text no choice has"), "C", CHOICES) == (1.0, "C")  # the label decides
    assert accuracy(choice_answer("C", CHOICES["A"]), "C", CHOICES) == (0.0, "A")  # a choice's text wins over a label


def test_str_em_is_fraction_of_qa_pairs_covered():
    pairs = [["Leonardo DiCaprio", "DiCaprio"], ["Louis Hayward"], ["Richard Chamberlain"]]
    assert str_em("DiCaprio starred in 1998; Louis Hayward in 1939.", pairs) == pytest.approx(2 / 3)
    assert str_em("Nobody.", pairs) == 0.0
    assert str_em("x", []) == 0.0


def test_rouge_l():
    assert metrics.rouge_l(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    partial = metrics.rouge_l(["the cat sat"], ["the cat sat on the mat"])
    assert 0.0 < partial < 1.0
    assert metrics.rouge_l(["x"], [""]) == 0.0  # no reference: not scored


def test_results_row_and_paper_table(tmp_path):
    run = {"task": "popqa", "method": "smart", "model": "/m/smart-7b", "n": 10, "score": 47.0, "fallbacks": {"intent": 2},
           "unparsed": 0, "wall_s": 3.0, "tokens_per_s": 12.5}
    table = tmp_path / "results.md"
    metrics.append_results_row(table, run)
    metrics.append_results_row(table, {**run, "method": "no_retrieval", "score": 20.0})
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| task | method") and len(lines) == 4
    assert "| popqa | smart | smart-7b | 10 | 47.00 | 2 |" in lines[2]
    asqa = {**run, "task": "asqa", "score": 30.0, "str_em": 30.0, "rouge_l": 25.5}
    text = paper_table([run, asqa, {**run, "method": "vanilla_rag", "score": 33.3}])
    assert "PopQA (match)" in text and "ASQA (str-em)" in text and "ASQA (ROUGE-L)" in text
    assert "| SMART (trained, 4 agents) | smart-7b | 47.0 (n=10) | 30.0 (n=10) | 25.5 |" in text
    assert "| Backbone + the same top-3 passages (vanilla RAG) | smart-7b | 33.3 (n=10) | - | - |" in text
    assert text.endswith("| SMART (published, AAAI 2025 (arXiv v3)) | Llama-2-7B | 42.60 | 41.16 | 40.66 |")
    preprint = paper_table([run, asqa], version="preprint")
    assert preprint.endswith("| SMART (published, earlier arXiv preprint) | Llama-2-7B | 47.66 | - | - |")


def test_paper_table_under_each_protocol():
    """Metrics JSONs with both protocols: each table reads its own, the main score with its CI and n."""
    run = {"task": "arc_c", "method": "smart", "model": "m", "score": 60.0, "n": 50,
           "protocols": {"strict": {"score": 60.0, "n": 50, "ci95": [46.0, 74.0], "unparsed": 2},
                         "paper": {"score": 48.0, "n": 50, "ci95": [34.0, 62.0]}}}
    asqa = {"task": "asqa", "method": "smart", "model": "m", "score": 30.0, "str_em": 30.0, "rouge_l": 25.5, "n": 20,
            "protocols": {"strict": {"score": 30.0, "n": 20, "ci95": [20.0, 40.0], "str_em": 30.0, "rouge_l": 25.5},
                          "paper": {"score": 35.0, "n": 20, "ci95": [25.0, 45.0], "str_em": 35.0,
                                    "rouge_lsum": 31.25}}}
    strict = paper_table([run, asqa]).splitlines()
    assert strict[0] == "| Method | model | ARC-C (accuracy) | ASQA (str-em) | ASQA (ROUGE-L) |"
    assert strict[2] == "| SMART (trained, 4 agents) | m | 60.0 [46.0, 74.0] (n=50) | 30.0 [20.0, 40.0] (n=20) | 25.5 |"
    paper = paper_table([run, asqa], protocol="paper").splitlines()
    assert paper[0] == "| Method | model | ARC-C (match) | ASQA (str-em) | ASQA (ROUGE-L) |"
    assert paper[2] == "| SMART (trained, 4 agents) | m | 48.0 [34.0, 62.0] (n=50) | 35.0 [25.0, 45.0] (n=20) | 31.2 |"
    assert paper_table([{**run, "protocols": {}}], protocol="paper").splitlines()[2].endswith("| m | - |")
