"""Parity of the paper protocol with the reference scripts (Self-RAG retrieval_lm/run_short_form.py + metrics.py;
ALCE eval.py), case by case, quirks included; both protocols side by side per item and per run."""
from __future__ import annotations

import json

import pytest

from smart.evaluation import metrics, protocols, tasks
# (answer, golds, Self-RAG match): the answer as the model wrote it, before run_short_form's post-processing
SELFRAG_MATCH = [
    ("Paris", ["Paris"], 1.0),
    ("paris", ["Paris"], 0.0),  # case-sensitive
    ("The capital is PARIS.", ["Paris"], 0.0),
    ("It is Paris, France.", ["Lyon", "Paris"], 1.0),  # any gold
    ("Seinefeld", ["Seine"], 1.0),  # a gold inside a longer word counts
    ("Paris[1]", ["Paris"], 1.0),  # a citation glued to the word
    ("Pa\nris", ["Paris"], 1.0),  # newlines are deleted: the lines run together
    ("Paris\nFrance", ["Paris France"], 0.0),  # ... not replaced by a space
    ("Par[Relevant]is</s>", ["Paris"], 1.0),  # Self-RAG's control tokens and end marker are deleted
    ("#Paris", ["#Paris"], 0.0),  # one leading "#" or ":" is dropped
    (":Paris", ["Paris"], 1.0),
    (" Paris ", ["Paris"], 1.0),  # nothing is stripped; a substring needs no stripping
    ("It SUPPORTS Paris", ["Paris"], 0.0),  # "SUPPORTS" turns any answer into "true", on every task
    ("", ["Paris"], 0.0),  # empty output (run_short_form itself fails on it)
    ("anything", [""], 1.0),  # an empty gold is inside every answer
]

# PubHealth: (answer, gold label as Self-RAG's files write it, match)
PUBHEALTH = [
    ("true", "true", 1.0),
    ("True.", "true", 0.0),  # case-sensitive: a capitalized verdict fails
    ("TRUE", "true", 0.0),
    ("untrue", "true", 1.0),  # "true" inside "untrue"
    ("false", "true", 0.0),
    ("It is false, not true.", "true", 1.0),  # both labels inside: right whatever the gold
    ("It is false, not true.", "false", 1.0),
    ("SUPPORTS", "true", 1.0),  # SUPPORTS -> "true", REFUTES -> "false"
    ("The evidence REFUTES it", "false", 1.0),
    ("SUPPORTS", "false", 0.0),
    ("supports", "true", 0.0),  # only the upper-case words are mapped
    ("tr\nue", "true", 1.0),
    ("Claim: flu | Fact: flu | Verdict: true", "true", 1.0),
    ("", "false", 0.0),
]

# ARC-Challenge: (answer, answerKey, match): the letter anywhere in the output, case-sensitive
ARC = [
    ("B", "B", 1.0),
    ("b", "B", 0.0),
    ("The answer is B.", "B", 1.0),
    ("Answer: C", "A", 1.0),  # the "A" of "Answer"
    ("bark (C)", "C", 1.0),
    ("protons (C)", "B", 0.0),
    ("A: metals\nB: liquids\nC: halogens\nD: antioxidants", "D", 1.0),  # listing every choice scores
    ("Both are right", "B", 1.0),
    ("", "A", 0.0),
]

PAIRS = [["Leonardo DiCaprio", "DiCaprio"], ["Louis Hayward"], ["Richard Chamberlain"]]

# ASQA str-em: (answer, qa_pairs' short answers, ALCE str-em)
STR_EM = [
    ("DiCaprio starred in 1998; Louis Hayward in 1939.", PAIRS, 2 / 3),
    ("LOUIS HAYWARD.", [["Louis Hayward"]], 1.0),  # normalized: case, punctuation, articles
    ("the king, Hayward", [["A Hayward"]], 1.0),
    ("in 1990", [["199"]], 1.0),  # a plain substring of the normalized output
    ("Louis[1] Hayward [2].", [["Louis Hayward"]], 1.0),  # citations removed first
    ("Nobody knows.\nDiCaprio and Louis Hayward.", PAIRS, 0.0),  # the first line only
    ("\n\nDiCaprio.\nLouis Hayward.", PAIRS, 1 / 3),  # after stripping the leading newlines
    ("DiCaprio.<|im_end|>", PAIRS, 1 / 3),
    ("", PAIRS, 0.0),
]

DICAPRIO, HAYWARD = "DiCaprio played the twins.", "Hayward played the king."
# ASQA ROUGE-Lsum: (answer, references: the annotations' long answers, F1)
ROUGE_LSUM = [
    (DICAPRIO, [DICAPRIO], 1.0),
    (f"{HAYWARD} {DICAPRIO}", [f"{DICAPRIO} {HAYWARD}"], 1.0),  # sentence by sentence: the order does not matter
    (HAYWARD, [DICAPRIO, HAYWARD], 1.0),  # the best of the two annotations
    (HAYWARD, [HAYWARD, DICAPRIO], 1.0),
    (f"{DICAPRIO}\n{HAYWARD}", [f"{DICAPRIO} {HAYWARD}"], 0.6667),  # the first line only: P 4/4, R 4/8
    ("DiCaprio[1] played the twins.", [DICAPRIO], 1.0),  # citations removed
    ("DiCaprio played the twins in 1998.", [DICAPRIO], 0.8),  # P 4/6, R 4/4 (stemmed, no stop words dropped)
    ("", [DICAPRIO], 0.0),
    (DICAPRIO, [], 0.0),
]


@pytest.mark.parametrize("answer,golds,expected", SELFRAG_MATCH)
def test_selfrag_match(answer, golds, expected):
    assert metrics.selfrag_match(answer, golds) == expected


@pytest.mark.parametrize("answer,gold,expected", PUBHEALTH)
def test_pubhealth_paper_match(answer, gold, expected):
    assert metrics.selfrag_match(answer, [gold]) == expected


@pytest.mark.parametrize("answer,key,expected", ARC)
def test_arc_paper_match(answer, key, expected):
    assert metrics.selfrag_match(answer, [key]) == expected


@pytest.mark.parametrize("answer,pairs,expected", STR_EM)
def test_alce_str_em(answer, pairs, expected):
    assert metrics.alce_str_em(answer, pairs) == pytest.approx(expected)


@pytest.mark.parametrize("answer,references,expected", ROUGE_LSUM)
def test_alce_rouge_lsum(answer, references, expected):
    assert metrics.alce_rouge_lsum(answer, references) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("text,expected", [
    ("Paris[1].", "Paris."), ("Paris [1][2].", "Paris."), ("Paris [12], France", "Paris, France"),
    ("Claim: a | Fact: b", "Claim: a Fact: b"), ("a [b] c", "a [b c"),
])
def test_alce_remove_citations(text, expected):
    assert metrics.alce_remove_citations(text) == expected


def test_alce_mauve_text_truncates_to_100_words_and_strips_end_punctuation():
    assert metrics.alce_mauve_text("Who?", "  Louis Hayward.\n\n") == "Who? Louis Hayward"
    long = metrics.alce_mauve_text("Q", " ".join(f"w{i}" for i in range(200)) + ".")
    assert long.split() == ["Q"] + [f"w{i}" for i in range(99)]


@pytest.mark.parametrize("answer,golds,em,f1", [
    ("The Seine.", ["Seine"], 1.0, 1.0), ("the Seine river", ["Seine"], 0.0, 2 / 3), ("Loire", ["Seine"], 0.0, 0.0),
    ("", ["Seine"], 0.0, 0.0),
])
def test_strict_exact_match_and_token_f1(answer, golds, em, f1):
    assert metrics.exact_match(answer, golds) == em and metrics.token_f1(answer, golds) == pytest.approx(f1)


# ------------------------------------------------------------------------------------------ per item, per run
def write_jsonl(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def examples(tmp_path, task: str, rows: list[dict]) -> list[tasks.Example]:
    return tasks.load_examples(task, write_jsonl(tmp_path / f"{task}.jsonl", rows), need_passages=False)


def test_both_protocols_per_item(tmp_path):
    popqa = examples(tmp_path, "popqa", [{"question": "Where?", "answers": ["Paris"]}])[0]
    assert metrics.score(tasks.get_task("popqa"), popqa, "paris!") == {"score": 1.0, "em": 1.0, "f1": 1.0,
                                                                   "paper_score": 0.0}
    claim = examples(tmp_path, "pubhealth", [{"question": "Water is wet.", "answers": ["SUPPORTS"]}])[0]
    assert claim.golds == ["true"]  # the gold mapped to true/false first
    assert metrics.score(tasks.get_task("pubhealth"), claim, "True.") == {"score": 1.0, "label": "true",
                                                                        "paper_score": 0.0}
    assert metrics.score(tasks.get_task("pubhealth"), claim, "untrue")["paper_score"] == 1.0
    choices = {"text": ["a", "b", "c"], "label": ["1", "2", "3"]}
    arc = examples(tmp_path, "arc_c", [{"question": "Q?", "choices": choices, "answerKey": "3"}])[0]
    assert arc.golds == ["C"] and arc.answer_key == "3"  # Self-RAG compares the key as the file writes it
    assert metrics.score(tasks.get_task("arc_c"), arc, "C") == {"score": 1.0, "label": "C", "paper_score": 0.0}
    assert metrics.score(tasks.get_task("arc_c"), arc, "C: 3 moles")["paper_score"] == 1.0


def test_aggregate_holds_both_protocols_with_intervals(tmp_path):
    task = tasks.get_task("popqa")
    items = examples(tmp_path, "popqa", [{"id": str(i), "question": "Q?", "answers": ["Paris"]} for i in range(4)])
    out = metrics.aggregate(task, items, [{"answer": a} for a in ("Paris", "paris", "Parisian", "Lyon")])
    assert out["score"] == 50.0 and out["n"] == 4  # the strict numbers stay at the top level
    strict, paper = out["protocols"]["strict"], out["protocols"]["paper"]
    assert (strict["score"], strict["n"], strict["em"]) == (50.0, 4, 50.0)
    assert (paper["score"], paper["n"]) == (50.0, 4)  # "Paris", "Parisian"
    assert strict["ci95"][0] <= 50.0 <= strict["ci95"][1] and len(paper["ci95"]) == 2
    with pytest.raises(ValueError, match="3 prediction rows for 4 examples"):
        metrics.aggregate(task, items, [{"answer": "x"}] * 3)


def test_asqa_aggregate_reads_the_annotations(tmp_path):
    task = tasks.get_task("asqa")
    item = {"question": "Who played the king?", "qa_pairs": [{"short_answers": ["Hayward"]},
                                                            {"short_answers": ["DiCaprio"]}],
            "answer": DICAPRIO, "annotations": [{"long_answer": DICAPRIO}, {"long_answer": HAYWARD}]}
    items = examples(tmp_path, "asqa", [item])
    assert items[0].annotations == [DICAPRIO, HAYWARD]
    out = metrics.aggregate(task, items, [{"answer": "Hayward[1] played the king.\nDiCaprio"}])
    strict, paper = out["protocols"]["strict"], out["protocols"]["paper"]
    # ours reads every line (DiCaprio) but "Hayward[1]" normalizes to "hayward1"; ALCE reads the first line only,
    # citations removed (Hayward)
    assert strict["str_em"] == out["str_em"] == 50.0
    assert paper["str_em"] == paper["score"] == 50.0
    assert paper["rouge_lsum"] == pytest.approx(100.0)  # the second annotation
    assert 0 < strict["rouge_l"] == out["rouge_l"] < 100  # ours: ROUGE-L against `answer`


@pytest.mark.parametrize("field,value", [("possible_answers", '["Paris", "City of Light"]'),
                                         ("possible_answers", ["Paris"]), ("answer", "Paris"), ("output", ["Paris"])])
def test_answer_field_shapes(tmp_path, field, value):
    item = examples(tmp_path, "popqa", [{"question": "Where?", field: value}])[0]
    assert item.golds[0] == "Paris"


def test_protocol_numbers_of_old_and_new_metrics():
    old = {"score": 40.0, "n": 5, "str_em": 40.0}
    assert protocols.numbers(old) is old and protocols.numbers(old, "paper") is None
    new = {**old, "protocols": {"strict": {"score": 40.0}, "paper": {"score": 30.0, "rouge_lsum": 20.0}}}
    assert protocols.value(new, "score", "paper") == 30.0 and protocols.value(new, "rouge_l", "paper") == 20.0
    assert protocols.value(old, "str_em") == 40.0 and protocols.value(old, "rouge_l", "paper") is None
    assert protocols.metric_name("pubhealth") == "accuracy" and protocols.metric_name("pubhealth", "paper") == "match"
