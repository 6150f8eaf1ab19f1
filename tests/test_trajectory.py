"""The trajectory format: render -> parse -> render identity, tolerant parsing, validation of long and short records."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from smart import trajectory as T
FIXTURES = Path(__file__).parent / "fixtures" / "trajectories"


def load(name: str) -> list[dict]:
    path = FIXTURES / name
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


VALID = load("long_valid.jsonl")


def random_trajectory(rng: random.Random) -> T.Trajectory:
    """A valid trajectory of random words: 1-3 queries, 0-9 passages, facts copied from their passages."""
    words = ["alpha", "beta", "river", "Paris", "1969", "o'clock", "(note)", "x-ray", "caf\u00e9", "--", "50%", "k9"]

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n)).capitalize() + rng.choice([".", "!", "?"])

    queries = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3))]
    passages = [T.Passage(title=" ".join(rng.choice(words) for _ in range(rng.randint(0, 3))),
                          text=" ".join(sentence(rng.randint(3, 12)) for _ in range(rng.randint(1, 4))))
                for _ in range(rng.choice([0, 1, 3, 6, 9]))]
    facts = []
    for i, p in enumerate(passages, start=1):
        if rng.random() < 0.5:
            sents = p.text.split(". ")
            facts.append(T.Fact(i, True, p.title, rng.choice(sents).strip()))
        else:
            facts.append(T.Fact(i, False))
    answer = "\n".join(sentence(rng.randint(1, 8)) for _ in range(rng.randint(1, 3)))
    return T.Trajectory(queries, passages, facts, answer, [f.index for f in facts if f.relevant])


@pytest.mark.parametrize("record", VALID, ids=[r["id"] for r in VALID])
def test_fixture_round_trip_and_valid(record):
    text = record["output"]
    t, problems = T.parse_long(text)
    assert problems == [] and T.validate_long(text) == [] and T.validate_record(record) == []
    assert T.render_long(t) == text
    assert t.citations == [f.index for f in t.relevant]


def test_random_trajectories_round_trip():
    rng = random.Random(0)
    for _ in range(300):
        t = random_trajectory(rng)
        text = T.render_long(t)
        parsed, problems = T.parse_long(text)
        assert problems == [], text
        assert T.render_long(parsed) == text
        assert parsed.queries == t.queries and parsed.citations == t.citations
        assert [(f.index, f.relevant, f.text) for f in parsed.facts] == [(f.index, f.relevant, f.text) for f in t.facts]
        assert T.validate_long(text) == [], text
        for record in T.short_trajectories("Some request?", "", t):
            assert T.validate_short(record) == [], record


def test_parsed_fixture_fields():
    t, _ = T.parse_long(VALID[1]["output"])
    assert t.queries == ["what guides ships at night", "purpose of a lighthouse"]
    assert len(t.passages) == 6 and t.passages[1].title == "Lighthouse"
    assert [f.index for f in t.relevant] == [2, 5] and t.answer == "B: a lighthouse"
    t, _ = T.parse_long(VALID[2]["output"])
    assert t.citations == [] and t.answer.endswith("home again.") and not t.relevant


def test_short_trajectories_split_the_long_one():
    record = VALID[0]
    t, _ = T.parse_long(record["output"])
    shorts = T.short_trajectories(record["instruction"], record["input"], t)
    assert [r["type"] for r in shorts] == [T.INTENT, T.LOCATOR_TYPE, T.GENERATOR_TYPE]
    for r in shorts:
        assert T.validate_short(r) == []
        prompt = T.format_prompt(r["instruction"], r["input"])
        assert prompt.count(T.EOI) == 1
        # the prompt's context after the request plus the target is a prefix-free piece of the long output
        context = prompt.split(T.EOI + "\n\n", 1)[1]
        assert (context + r["output"]).replace(T.RECONSTRUCTOR, "") in record["output"].replace(T.RECONSTRUCTOR, "")
    no_facts = T.short_trajectories("Write a haiku.", "", T.parse_long(VALID[2]["output"])[0])
    assert [r["type"] for r in no_facts] == [T.INTENT, T.LOCATOR_TYPE, T.GENERATOR_NO_FACTS]
    assert T.format_prompt(no_facts[-1]["instruction"], "").endswith(T.EOI + "\n\n" + T.GENERATOR)


def test_generator_after_chain_is_the_long_trajectory_cut_before_the_answer():
    record = VALID[0]
    t, _ = T.parse_long(record["output"])
    step = {"id": "x", **T.generator_after_chain(record["instruction"], record["input"], t)}
    prompt = T.format_prompt(step["instruction"], step["input"])
    assert step["type"] == T.GENERATOR_AFTER_CHAIN and prompt.endswith(T.GENERATOR)
    assert prompt.split(T.EOI + "\n\n", 1)[1] + step["output"] == T.render_long(t)
    assert T.validate_record(step) == []
    bad_fact = {**step, "instruction": step["instruction"].replace("AD 79", "AD 80", 1)}  # the fact no longer verbatim
    assert "fact [N] is not a verbatim span of its passage" in {T.problem_kind(p) for p in T.validate_record(bad_fact)}


def test_a_restated_request_ends_the_retrieval_block_and_is_no_passage():
    assert T.restated_request("Who wrote  Hamlet?" + T.EOI + "\n\n<|Locator|>:\n") == "Who wrote Hamlet?"
    assert T.restated_request("Is it true?", "Granite is a rock." + T.EOI + "\n\n") == ""  # only open questions
    assert T.restated_request("Choose.", "Fog is made of\nA: water.\nB: heat.") == ""
    t, _ = T.parse_long(VALID[0]["output"])
    t.request = "Which city did the eruption bury?"
    text = T.render_long(t)
    assert f"\nRequest: {t.request}{T.RETRIEVAL_CLOSE}\n\n{T.LOCATOR}" in text
    parsed, problems = T.parse_long(text)
    assert problems == [] and T.validate_long(text) == [] and parsed.request == t.request
    assert [p.text for p in parsed.passages] == [p.text for p in t.passages]  # the last passage ends before it
    assert T.render_long(parsed) == text and T.render_long(T.parse_long(VALID[0]["output"])[0]) == VALID[0]["output"]
    locator = T.short_trajectories(VALID[0]["instruction"], VALID[0]["input"], t)[1]
    assert T.format_prompt(locator["instruction"], locator["input"]).endswith(
        f"\nRequest: {t.request}{T.RETRIEVAL_CLOSE}\n\n{T.LOCATOR}") and T.validate_short(locator) == []
    ablated = T.ablate_record({"id": "x", "instruction": "q" + T.EOI + "\n\n", "output": text}, "no_intent")
    assert T.parse_long(ablated["output"])[0].request == t.request and T.validate_record(ablated) == []


def test_authors_shaped_long_quirks_parse():
    quirky_locator, no_space_fact = load("authors_shape_long.json")
    t, problems = T.parse_long(quirky_locator["output"])  # `<|Locator|>` without colon, all irrelevant, no [Cite]
    assert problems == [] and len(t.facts) == 3 and not t.relevant and t.answer.startswith("1. Check")
    assert T.validate_long(quirky_locator["output"]) == ["header <|Locator|> without colon"]
    t, problems = T.parse_long(no_space_fact["output"])  # fact line without the leading space
    assert problems == [] and t.relevant[0].title == "Pharos of Alexandria"
    assert t.relevant[0].text.startswith("The Lighthouse of Alexandria") and t.citations == [1]
    assert T.validate_long(no_space_fact["output"]) == []


def test_authors_shaped_short_records():
    locator, generator, empty_cite, intent = load("authors_shape_short.json")
    assert [T.record_type(r) for r in (locator, generator, empty_cite, intent)] == \
        [T.LOCATOR_TYPE, T.GENERATOR_TYPE, T.GENERATOR_TYPE, T.INTENT]
    facts, problems = T.parse_locator(locator["output"], 1)  # "Title \n fact" under an `<|retrieval|>` block
    assert problems == [] and facts[0].title == "Mount Etna" and facts[0].text.startswith("Mount Etna is an active")
    assert T.validate_short(locator) == ["header <|Locator|> without colon"]
    assert T.validate_short(generator) == ["header <|Locator|> without colon"]
    answer, citations, problems = T.parse_answer(empty_cite["output"])  # `[Cite]: </eog>`
    assert citations == [] and problems == [] and answer.endswith("abandoned ruin.")
    assert "empty [Cite] list" in T.validate_short(empty_cite)
    assert T.validate_short(intent) == [] and T.parse_intent(intent["output"])[0] == ["Mount Etna current volcanic activity"]


@pytest.mark.parametrize("claim,fact", [("samurai", "mathematician"), ("Paris", "Paris"), ("1,100 km", "1100 km")])
def test_verdict_round_trip(claim, fact):
    for label in ("true", "false"):
        assert T.parse_verdict(T.render_verdict(claim, fact, label)) == (claim, fact)
        assert T.parse_verdict(T.render_verdict(claim, fact, label) + T.EOG + "\n") == (claim, fact)
    assert T.parse_verdict("Claim: x | Fact: y") == ("x", "y")  # cut before its verdict
    assert T.parse_verdict("true") is None and T.parse_verdict("Fact: y | Claim: x") is None


def test_parsing_broken_text_never_raises_and_reports():
    text = VALID[1]["output"]
    for cut in range(0, len(text), 7):
        t, problems = T.parse_long(text[:cut])
        assert isinstance(t, T.Trajectory)
        assert T.validate_long(text[:cut]), cut  # every truncation is flagged
    rng = random.Random(1)
    pieces = [T.EOR, T.EOL, T.EOG, T.RETRIEVAL_OPEN, T.RETRIEVAL_CLOSE, T.RECONSTRUCTOR, T.LOCATOR, T.GENERATOR,
              "[Relevant]: [", "[Irrelevant]: [7]", "[Cite]: [", "Search(", ")", "]", "\n", " ", "x", "[99]", "\x00"]
    for _ in range(500):
        soup = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        T.parse_long(soup)
        T.validate_long(soup)
        T.validate_short({"type": rng.choice(T.SHORT_TYPES), "instruction": soup, "input": "", "output": soup})


def mutate(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


LONG_DEFECTS = [
    (lambda s: s[: -len(T.EOG)], "does not end with </eog>"),
    (lambda s: mutate(s, "[Cite]: [2]", "[Cite]: [2] [7]"), "citation [N] out of range N..N"),
    (lambda s: mutate(s, "[Cite]: [2]", "[Cite]: [1]"), "citation [N] is not a relevant passage"),
    (lambda s: mutate(s, "that destroyed the Roman", "that flattened the Roman"), "fact [N] is not a verbatim span of its passage"),
    (lambda s: mutate(s, T.RETRIEVAL_CLOSE, ""), "unbalanced <retrieval>/</retrieval>"),
    (lambda s: mutate(s, T.EOR, T.EOR + T.EOR), "</eor> appears N times"),
    (lambda s: mutate(s, "\n[Irrelevant]: [3] Lacking Supporting Facts", ""), "locator judged N of N passages"),
    (lambda s: mutate(s, "Search(volcano that destroyed Pompeii)", "volcano"), "intent: no Search(...)"),
    (lambda s: mutate(s, "<|Locator|>:", "<|Locator|>"), "header <|Locator|> without colon"),
    (lambda s: mutate(s, "[Cite]: [2]", "[Cite]: "), "empty [Cite] list"),
]


@pytest.mark.parametrize("defect, kind", LONG_DEFECTS, ids=[k for _, k in LONG_DEFECTS])
def test_validator_flags_each_long_defect(defect, kind):
    kinds = {T.problem_kind(p) for p in T.validate_long(defect(VALID[0]["output"]))}
    assert kind in kinds, kinds


def test_validator_flags_each_short_defect():
    t, _ = T.parse_long(VALID[0]["output"])
    intent, locator, generator = ({**r, "id": r["type"]} for r in T.short_trajectories(VALID[0]["instruction"], "", t))

    def kinds(record: dict) -> set[str]:
        return {T.problem_kind(p) for p in T.validate_record(record)}

    assert "output: does not end with </eor>" in kinds({**intent, "output": "Search(x)"})
    assert "output: stray </eog>" in kinds({**intent, "output": "Search(x)</eog></eor>"})
    assert "fact [N] is not a verbatim span of its passage" in kinds(
        {**locator, "output": locator["output"].replace("AD 79", "AD 80")})
    assert "locator: passage [N] out of range N..N" in kinds({**locator, "output": locator["output"].replace("[2] Ves", "[8] Ves")})
    assert "citation [N] out of range N..N" in kinds({**generator, "output": "Vesuvius\n[Cite]: [9]</eog>"})
    assert "prompt: does not end with the <|Generator|> header" in kinds({**generator, "instruction": intent["instruction"]})
    assert "unknown short type 'summarizer'" in kinds({**generator, "type": "summarizer"})
    assert "record: missing field 'output'" in kinds({**generator, "output": ""})
    assert all(T.validate_record(r) == [] for r in (intent, locator, generator))


@pytest.mark.parametrize("ablation", [a for a in T.ABLATIONS if a != "full"])
def test_ablated_records_validate_and_keep_only_their_steps(ablation):
    agents = T.ABLATIONS[ablation]
    for record in VALID:
        t = T.parse_long(record["output"])[0]
        ablated = T.ablate_record(record, ablation)
        assert ablated["ablation"] == ablation and ablated["instruction"] == record["instruction"]
        text = ablated["output"]
        assert T.validate_record(ablated) == [], (record["id"], T.validate_record(ablated))
        assert (T.RECONSTRUCTOR in text) == agents.intent
        assert (T.RETRIEVAL_OPEN in text) == (agents.retrieval and bool(t.passages))
        assert (T.LOCATOR in text) == (agents.locator and bool(t.passages))
        assert text.endswith(T.render_answer(t.answer, t.citations if agents.retrieval else []))
        # a full trajectory is not a valid ablated one, and an ablated one is not a valid full one
        if (not agents.intent) or t.passages:
            assert T.validate_record({**record, "ablation": ablation}) != []
            assert T.validate_record({**ablated, "ablation": "full"}) != []


def test_ablation_render_examples():
    t = T.Trajectory(["q"], [T.Passage("A", "Alpha is first."), T.Passage("B", "Beta.")],
                     [T.Fact(1, True, "A", "Alpha is first."), T.Fact(2, False)], "alpha", [1])
    retrieval = "<retrieval>[1] A\nAlpha is first.\n[2] B\nBeta.</retrieval>\n\n"
    assert T.render_long(t, T.ABLATIONS["no_locator"]) == (
        "<|Reconstructor|>:\nSearch(q)</eor>\n\n" + retrieval + "<|Generator|>:\nalpha\n[Cite]: [1]</eog>")
    assert T.render_long(t, T.ABLATIONS["no_intent"]).startswith(retrieval + "<|Locator|>:\n[Relevant]: [1] A\n")
    assert T.render_long(t, T.ABLATIONS["generator_only"]) == "<|Generator|>:\nalpha</eog>"
    assert T.validate_record({"id": "x", "instruction": "q", "output": "<|Generator|>:\nalpha</eog>",
                              "ablation": "no_such"}) == ["record: unknown ablation 'no_such' (one of full, no_intent, "
                                                          "no_locator, generator_only)"]
