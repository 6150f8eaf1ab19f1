"""Data creation steps: converter shapes, intent and fact locating against a scripted server, combine, validator, demo."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from smart import trajectory as T
from smart.data.combine import combine, trajectory_stats
from smart.data.convert import (DIALOGUE, FACT_VERIFICATION, MULTI_HOP_QA, MULTIPLE_CHOICE, OPEN_QA, INSTRUCTION,
                           convert_file)
from smart.data.intent import run_intent
from smart.data.locator import locate_by_answer, run_locate, snap_fact
from smart.io import write_jsonl
from openai_stub import StubOpenAI
from smart.data.teacher import OpenAITeacher

FIXTURES = Path(__file__).parent / "fixtures" / "trajectories"
REPO = Path(__file__).resolve().parent.parent


def cli(name: str):
    """The `main` of a data_creation/ script."""
    spec = importlib.util.spec_from_file_location(name, REPO / "data_creation" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def teacher(server: StubOpenAI) -> OpenAITeacher:
    return OpenAITeacher("stub", base_url=server.url, backoff_base=0.01, max_retries=2, concurrency=4)


def rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


# ----------------------------------------------------------------------------------------------- converter
SHAPES = {
    "nq": ([{"id": 1, "question": "who wrote hamlet", "answers": ["Shakespeare", "Hamlet", "William Shakespeare"]},
            {"id": 2, "question": "empty one", "answers": []}], OPEN_QA),
    "hotpotqa": ([{"_id": "h1", "question": "Which is older, A or B?", "answer": "A"}], MULTI_HOP_QA),
    "fever": ([{"id": 5, "claim": "Paris is in France.", "label": "SUPPORTS"},
               {"id": 6, "claim": "Paris is in Peru.", "label": "REFUTES"},
               {"id": 7, "claim": "Paris is nice.", "label": "NOT ENOUGH INFO"}], FACT_VERIFICATION),
    "pubhealth": ([{"question": "Vitamin C cures colds.", "answers": ["false"]}], FACT_VERIFICATION),
    "arc_c": ([{"id": "a1", "question": "Which is a metal?", "answerKey": "2",
                "choices": {"text": ["wood", "iron", "glass", "water"], "label": ["1", "2", "3", "4"]}},
               {"id": "a2", "question": {"stem": "Sun rises in the", "choices": [{"text": "east", "label": "A"},
                                                                                   {"text": "west", "label": "B"}]},
                "answerKey": "A"}], MULTIPLE_CHOICE),
    "openbookqa": ([{"id": "o1", "question_stem": "Plants need", "answerKey": "B",
                     "choices": {"text": ["salt", "light"], "label": ["A", "B"]}}], MULTIPLE_CHOICE),
    "qrecc": ([{"Conversation_no": 1, "Context": ["Who is Ada Lovelace?", "A mathematician."],
                "Question": "What did she write?", "Answer": "Notes on the Analytical Engine."}], DIALOGUE),
    "wow": ([{"id": "w1", "input": "I like jazz.\nMe too, who is your favourite?",
              "output": [{"answer": "Miles Davis, the trumpeter."}]}], DIALOGUE),
    "alpaca": ([{"instruction": "Name a primary colour.", "input": "", "output": "Red."},
                {"instruction": "Summarize.", "input": "Long text.", "output": ""}], INSTRUCTION),
}


@pytest.mark.parametrize("name", SHAPES)
def test_converter_reads_each_shape(tmp_path, name):
    source, task = SHAPES[name]
    path = tmp_path / f"{name}.jsonl"
    write_jsonl(path, source)
    items, rejected = convert_file(str(path), name)
    assert items and all(i["task_type"] == task and i["dataset_name"] == name and i["output"] for i in items)
    assert len({i["id"] for i in items}) == len(items)
    first = items[0]
    expected = {
        "nq": ("who wrote hamlet", "", "Shakespeare"),
        "hotpotqa": ("Which is older, A or B?", "", "A"),
        "fever": ("Is the following statement correct or not? Say true if it's correct; otherwise, say false.",
                  "Paris is in France.", "true"),
        "pubhealth": (None, "Vitamin C cures colds.", "false"),
        "arc_c": ("Given four answer candidates, A, B, C and D, choose the best answer choice.",
                  "Which is a metal?\nA: wood\nB: iron\nC: glass\nD: water", "iron (B)"),
        "openbookqa": (None, "Plants need\nA: salt\nB: light", "light (B)"),
        "qrecc": (None, "Who is Ada Lovelace?\nA mathematician.\nWhat did she write?", "Notes on the Analytical Engine."),
        "wow": (None, "I like jazz.\nMe too, who is your favourite?", "Miles Davis, the trumpeter."),
        "alpaca": ("Name a primary colour.", "", "Red."),
    }[name]
    assert (first["instruction"] if expected[0] is not None else None, first["input"], first["output"]) == expected
    if name == "nq":
        assert first["answers"] == ["Shakespeare", "William Shakespeare"] and rejected == {"empty_answer": [f"{path}:2"]}
    if name == "fever":
        assert items[1]["output"] == "false" and rejected == {"unknown_label": [f"{path}:3"]}
    if name == "arc_c":
        assert items[1]["input"] == "Sun rises in the\nA: east\nB: west" and items[1]["output"] == "east (A)"
    if name == "alpaca":
        assert rejected == {"empty_answer": [f"{path}:2"]}


# ----------------------------------------------------------------------------------------------- intent step
def scripted_intent(messages: list[dict]) -> str:
    request = messages[-1]["content"].rsplit("Request:\n", 1)[-1]
    for key, reply in {"good": "Queries:\n- alpha facts\n- beta facts", "empty": "  ", "foreign": "Поиск фактов",
                       "rambling": " ".join(["word"] * 40), "many": "a\nb\nc\nd\ne", "cut": "half a quer"}.items():
        if key in request:
            return reply
    return "plain query"


def test_intent_step_counts_fallbacks_and_bad_rows(tmp_path):
    good = [{"id": k, "dataset_name": "t", "task_type": OPEN_QA, "instruction": f"{k} question?", "output": "x"}
            for k in ("good", "empty", "foreign", "rambling", "many", "cut")]
    bad = [{"dataset_name": "t", "task_type": OPEN_QA, "instruction": "no id", "output": "x"},
           {"id": "b1", "task_type": "poetry", "instruction": "q", "output": "x"},
           {"id": "b2", "task_type": OPEN_QA, "instruction": "q", "output": ""},
           {"id": "b3", "task_type": OPEN_QA, "instruction": "", "output": "x"}]
    write_jsonl(tmp_path / "items.jsonl", good + bad)
    with StubOpenAI(respond=scripted_intent, faults={"cut question": ["length"]}) as server:
        summary = run_intent(str(tmp_path / "items.jsonl"), str(tmp_path / "intent.jsonl"), teacher(server), 3)
    out = rows(tmp_path / "intent.jsonl")
    assert set(out) == {"good", "empty", "foreign", "rambling", "many", "cut"}
    assert out["good"]["queries"] == ["alpha facts", "beta facts"] and out["good"]["flags"] == []
    assert out["many"]["queries"] == ["a", "b", "c"] and out["many"]["flags"] == ["intent_capped"]
    for key in ("empty", "foreign", "rambling", "cut"):
        assert out[key]["queries"] == [f"{key} question?"] and "intent_fallback" in out[key]["flags"]
    assert summary.flags == {"intent_capped": 1, "intent_empty": 1, "intent_fallback": 4, "intent_off_format": 1,
                             "intent_truncated": 1, "intent_wrong_language": 1}
    assert summary.flagged_ids["intent_wrong_language"] == ["foreign"]
    assert summary.rejected == {"missing_id": ["line 7"], "unknown_task_type": ["b1"], "empty_answer": ["b2"],
                                "missing_instruction": ["b3"]}


# ----------------------------------------------------------------------------------------------- fact locating
PASSAGES = {
    "exact": "The Nile is a major river in Africa. It flows north into the Mediterranean Sea.",
    "near": "The Amazon carries more water than any other river. It drains a basin in South America.",
    "far": "Mount Fuji is the highest mountain in Japan. It is an active volcano.",
    "no": "Chess is a board game for two players.",
    "garbage": "Tea is an aromatic beverage.",
    "empty": "Coffee is a brewed drink.",
    "foreign": "Wine is an alcoholic drink made from grapes.",
}
JUDGEMENTS = {
    "exact": "[Relevant]\nFact: It flows north into the Mediterranean Sea.",
    "near": "[Relevant]\nFact: The Amazon carries more water than any other rivers",
    "far": "[Relevant]\nFact: Rivers are long and wet.",
    "no": "[Irrelevant]",
    "garbage": "I am not sure what you mean.",
    "empty": "",
    "foreign": "[Relevant]\nFact: \u0412\u0438\u043d\u043e \u2014 \u0430\u043b\u043a\u043e\u0433\u043e\u043b\u044c\u043d\u044b\u0439 \u043d\u0430\u043f\u0438\u0442\u043e\u043a.",
}


def scripted_locator(messages: list[dict]) -> str:
    passage = messages[-1]["content"].rsplit("Passage: ", 1)[-1]
    return next(JUDGEMENTS[k] for k, text in PASSAGES.items() if text in passage)


def test_teacher_locator_keeps_only_verbatim_facts(tmp_path):
    ctxs = [{"id": k, "title": k.title(), "text": text, "score": 1.0} for k, text in PASSAGES.items()]
    item = {"id": "r1", "dataset_name": "t", "task_type": OPEN_QA, "instruction": "Which river?", "output": "Nile",
            "queries": ["river"], "ctxs": ctxs}
    write_jsonl(tmp_path / "retrieved.jsonl", [item, {**item, "id": "r2", "ctxs": None}])
    with StubOpenAI(respond=scripted_locator) as server:
        summary = run_locate(str(tmp_path / "retrieved.jsonl"), str(tmp_path / "located.jsonl"), teacher(server))
    judged = {c["id"]: c for c in rows(tmp_path / "located.jsonl")["r1"]["ctxs"]}
    assert {k for k, c in judged.items() if c["relevant"]} == {"exact", "near"}
    assert judged["exact"]["fact"] == "It flows north into the Mediterranean Sea."
    assert judged["near"]["fact"] == "The Amazon carries more water than any other river."
    assert summary.flags == {"fact_snapped": 1, "fact_unmatched": 1, "locator_empty": 1, "locator_off_format": 1,
                             "locator_wrong_language": 1}
    assert summary.rejected == {"missing_ctxs": ["r2"]} and summary.teacher["requests"] == 7


def test_snap_fact_threshold():
    text = PASSAGES["near"]
    assert snap_fact("  The Amazon carries more water than any other river. ", text) == (
        "The Amazon carries more water than any other river.", "exact")
    assert snap_fact("It drains a basin in south america", text)[1] == "snapped"
    assert snap_fact("Completely different words here", text) == (None, "unmatched")


# ----------------------------------------------------------------------------------------------- combine
def located_items() -> list[tuple[int, dict]]:
    ctxs = [{"id": str(i), "title": t, "text": x, "score": 1.0} for i, (t, x) in enumerate(
        [("Nile", PASSAGES["exact"]), ("Fuji", PASSAGES["far"]), ("Nile", "The Nile  has\ttwo major tributaries.")])]
    qa = {"id": "c1", "dataset_name": "nq", "task_type": OPEN_QA, "instruction": "Where does the Nile flow?",
          "input": "", "output": "Mediterranean Sea", "answers": ["Mediterranean Sea"], "queries": ["Nile course"],
          "ctxs": ctxs, "flags": ["intent_fallback"]}
    mc = {"id": "c2", "dataset_name": "arc_c", "task_type": MULTIPLE_CHOICE, "instruction": "Choose.",
          "input": "Where is Fuji?\nA: Japan\nB: Peru", "output": "A: Japan", "answers": ["Japan"],
          "queries": ["Mount Fuji", "Japan mountains"], "ctxs": ctxs}
    lone = {"id": "c3", "dataset_name": "alpaca", "task_type": INSTRUCTION, "instruction": "Say hi.", "input": "",
            "output": "Hi!", "queries": ["greetings"], "ctxs": ctxs[1:2]}
    broken = {**lone, "id": "c4", "output": "Hi </eog> there"}
    return list(enumerate([locate_by_answer(qa), locate_by_answer(mc), locate_by_answer(lone), locate_by_answer(broken)], 1))


def test_answer_locator_and_combine_make_valid_records():
    items, longs, shorts, rejected = combine(located_items())
    assert [i["id"] for i in items] == ["c1", "c2", "c3"] and rejected == {"invalid_trajectory": ["c4"]}
    c1 = items[0]
    assert [c["relevant"] for c in c1["ctxs"]] == [True, False, False]
    # the supporting second sentence, with the passage's lead (`with_lead`)
    assert c1["ctxs"][0]["fact"] == "The Nile is a major river in Africa. It flows north into the Mediterranean Sea."
    assert all(T.validate_record(r) == [] for r in longs + shorts)
    t, _ = T.parse_long(longs[0]["output"])
    assert t.citations == [1] and t.passages[2].text == "The Nile has two major tributaries."
    assert longs[1]["input"].endswith(T.EOI + "\n\n") and longs[0]["instruction"].endswith(T.EOI + "\n\n")
    assert [r["type"] for r in shorts if r["id"].startswith("c3")] == [T.INTENT, T.LOCATOR_TYPE, T.GENERATOR_NO_FACTS]
    assert {r["id"] for r in shorts if r["id"].startswith("c1")} == {"c1_intent", "c1_locator", "c1_generator"}
    stats = trajectory_stats(items, longs + shorts)
    assert stats["counts"]["nq"] == {"generator": 1, "intent": 1, "locator": 1, "long": 1}
    assert stats["relevant_ratio"] == round(2 / 7, 4) and stats["items_with_relevant"] == round(2 / 3, 4)
    assert stats["flags"] == {"intent_fallback": 1, "no_fact_located": 1}  # c3: no passage holds its answer


def test_missed_fact_records_put_passage_1s_first_sentence_as_the_located_fact():
    items, longs, _, _ = combine(located_items(), missed_facts=True)
    assert combine(located_items())[1] == [r for r in longs if r["type"] == T.LONG]
    missed = [r for r in longs if r["type"] == T.GENERATOR_AFTER_CHAIN]
    # c1 (open, answered by passage 1's second sentence) gets one; c2 (multiple choice) and c3 (no fact) do not
    assert [r["id"] for r in missed] == ["c1_missed_fact"] and longs.index(missed[0]) == 1
    t, _ = T.parse_long(T.format_prompt(missed[0]["instruction"], missed[0]["input"]).split(T.EOI + "\n\n", 1)[1]
                        + missed[0]["output"])
    assert [(f.index, f.relevant, f.text) for f in t.facts] == [
        (1, True, "The Nile is a major river in Africa."), (2, False, ""), (3, False, "")]
    assert t.answer == "Mediterranean Sea" and t.citations == [] and T.validate_record(missed[0]) == []
    first_holds_it = [(k, {**row, "answers": ["Mediterranean Sea", "Africa"]}) for k, row in located_items()]
    assert not [r for r in combine(first_holds_it, missed_facts=True)[1] if r["type"] == T.GENERATOR_AFTER_CHAIN]


def test_restate_request_ends_every_retrieval_block_with_the_items_request():
    plain = combine(located_items(), missed_facts=True)
    items, longs, shorts, rejected = combine(located_items(), missed_facts=True, restate_request=True)
    assert [i["id"] for i in items] == [i["id"] for i in plain[0]] and rejected == plain[3]
    restated = {"c1": "Where does the Nile flow?", "c2": "", "c3": "Say hi."}  # c2: a question with choices
    for item in items:
        long = next(r for r in longs if r["id"] == item["id"])
        assert T.parse_long(long["output"])[0].request == restated[item["id"]]
        locator = next(r for r in shorts if r["id"] == f"{item['id']}_locator")
        locator_prompt = T.format_prompt(locator["instruction"], locator["input"])
        if restated[item["id"]]:
            assert f"{T.REQUEST_HEAD}{restated[item['id']]}{T.RETRIEVAL_CLOSE}" in long["output"]
            assert f"{T.REQUEST_HEAD}{restated[item['id']]}{T.RETRIEVAL_CLOSE}" in locator_prompt
        else:
            assert T.REQUEST_HEAD not in long["output"] + locator_prompt
    assert all(T.validate_record(r) == [] for r in longs + shorts)
    missed = next(r for r in longs if r["type"] == T.GENERATOR_AFTER_CHAIN)
    assert T.REQUEST_HEAD in T.format_prompt(missed["instruction"], missed["input"])
    # apart from the restated requests, the records are those made without
    restated = re.compile(re.escape(T.REQUEST_HEAD) + ".*?(?=" + re.escape(T.RETRIEVAL_CLOSE) + ")", re.S)
    assert [{k: restated.sub("", v) if isinstance(v, str) else v for k, v in r.items()} for r in longs + shorts] \
        == plain[1] + plain[2]


def test_a_missed_fact_record_that_fails_validation_is_counted_not_dropped(monkeypatch):
    import smart.data.combine as combine_module

    def failing_missed_facts(record):
        return ["broken"] if record["type"] == T.GENERATOR_AFTER_CHAIN else T.validate_short(record)

    monkeypatch.setattr(combine_module, "validate_short", failing_missed_facts)
    items, longs, _, rejected = combine(located_items(), missed_facts=True)
    assert [i["id"] for i in items] == ["c1", "c2", "c3"]  # the item itself stays
    assert rejected == {"invalid_trajectory": ["c4"], "invalid_missed_fact": ["c1"]}
    assert not [r for r in longs if r["type"] == T.GENERATOR_AFTER_CHAIN]

def test_combine_cli_json_and_stats_with_tokenizer(tmp_path, embedded_llm_dir):
    combine_main = cli("combine_data")
    write_jsonl(tmp_path / "located.jsonl", [row for _, row in located_items()])
    combine_main(["--input_file", str(tmp_path / "located.jsonl"), "--long_output", str(tmp_path / "long.json"),
                  "--short_output", str(tmp_path / "short.jsonl"), "--tokenizer", str(embedded_llm_dir)])
    longs = json.loads((tmp_path / "long.json").read_text())
    assert isinstance(longs, list) and len(longs) == 3
    stats = json.loads((tmp_path / "long.json.stats.json").read_text())
    assert stats["tokens"]["long"]["max"] >= stats["tokens"]["long"]["p50"] > 20
    assert stats["rejected_ids"] == {"invalid_trajectory": ["c4"]}
    combine_main(["--input_file", str(tmp_path / "located.jsonl"), "--long_output", str(tmp_path / "long.jsonl"),
                  "--short_output", str(tmp_path / "short.jsonl"), "--missed_facts"])
    missed = [json.loads(x) for x in (tmp_path / "long.jsonl").read_text().splitlines()]
    assert [r["type"] for r in missed] == [T.LONG, T.GENERATOR_AFTER_CHAIN, T.LONG, T.LONG]
    assert json.loads((tmp_path / "long.jsonl.stats.json").read_text())["types"][T.GENERATOR_AFTER_CHAIN] == 1


# ----------------------------------------------------------------------------------------------- validator CLI
def test_validator_cli_counts_problems(tmp_path, capsys):
    validate_main = cli("validate_data")
    good = [json.loads(line) for line in (FIXTURES / "long_valid.jsonl").read_text().splitlines()]
    bad = [{**good[0], "id": "cut", "output": good[0]["output"][:-6]},
           {**good[0], "id": "cite", "output": good[0]["output"].replace("[Cite]: [2]", "[Cite]: [2] [9]")},
           {**good[0], "id": "nooutput", "output": ""}]
    write_jsonl(tmp_path / "mixed.jsonl", good + bad)
    with pytest.raises(SystemExit) as e:
        validate_main([str(tmp_path / "mixed.jsonl"), str(FIXTURES / "authors_shape_short.json")])
    report = json.loads(capsys.readouterr().out)
    assert e.value.code == 1 and report["records"] == 11 and report["clean"] == 5
    assert report["problems"]["does not end with </eog>"] == 1
    assert report["problems"]["citation [N] out of range N..N"] == 1
    assert report["problems"]["record: missing field 'output'"] == 1
    assert report["problems"]["header <|Locator|> without colon"] == 3
    assert report["problem_ids"]["empty [Cite] list"] == ["quirk_short_3"]
    with pytest.raises(SystemExit) as e:
        validate_main([str(FIXTURES / "long_valid.jsonl")])
    assert e.value.code == 0


def test_ablation_data_cli_derives_clean_ablated_sets(tmp_path, capsys):
    ablate_main, validate_main = cli("make_ablation_data"), cli("validate_data")
    good = [json.loads(line) for line in (FIXTURES / "long_valid.jsonl").read_text().splitlines()]
    short = T.short_trajectories("Who wrote Hamlet?", "", T.parse_long(good[0]["output"])[0])[0]
    broken = {**good[0], "id": "cut", "output": good[0]["output"][:-6]}
    write_jsonl(tmp_path / "long.jsonl", good + [{**short, "id": "s0"}, broken])
    ablate_main(["--input_file", str(tmp_path / "long.jsonl"), "--output_dir", str(tmp_path / "abl")])
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == len(good) + 2 and report["clean"] == len(good)
    assert report["left_out"] == {"not a long trajectory (type 'intent')": 1, "does not end with </eog>": 1,
                                  "</eog> appears N times": 1, "generator: missing </eog>": 1}
    assert report["left_out_ids"]["does not end with </eog>"] == ["cut"]
    files = sorted((tmp_path / "abl").glob("*.jsonl"))
    assert [f.name for f in files] == ["train_long_generator_only.jsonl", "train_long_no_intent.jsonl",
                                       "train_long_no_locator.jsonl"]
    for f in files:
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        assert [r["id"] for r in rows] == [r["id"] for r in good]
        with pytest.raises(SystemExit) as e:
            validate_main([str(f)])
        assert e.value.code == 0, f.name
    capsys.readouterr()
    write_jsonl(tmp_path / "only_short.jsonl", [short])
    with pytest.raises(SystemExit) as e:
        ablate_main(["--input_file", str(tmp_path / "only_short.jsonl"), "--output_dir", str(tmp_path / "none")])
    assert "no clean long trajectory" in str(e.value.code) and not (tmp_path / "none").exists()


# ----------------------------------------------------------------------------------------------- demo data, script
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, encoder_dir) -> tuple[Path, Path, str]:
    """250 articles of the embedded corpus: (vital-articles JSON, psgs_w100 TSV, glob of its embeddings)."""
    from smart.defaults import corpus_json
    from smart.retrieval.passages import vital_articles_to_tsv
    from smart.retrieval.retriever import embed_passages

    corpus = json.loads(Path(corpus_json()).read_text())
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "corpus.json").write_text(json.dumps({k: corpus[k] for k in sorted(corpus)[::40]}))
    vital_articles_to_tsv(folder / "corpus.json", folder / "psgs.tsv")
    embed_passages(str(encoder_dir), str(folder / "psgs.tsv"), str(folder / "emb"), progress=False)
    return folder / "corpus.json", folder / "psgs.tsv", str(folder / "emb" / "*")


def test_relations_read_off_passages():
    from smart.data.demo_data import relations_of_passage

    person = relations_of_passage("Marie Curie", "People", "7", "Marie Curie was a Polish physicist and chemist "
                                  "who conducted pioneering research on radioactivity. She was the first woman to win "
                                  "a Nobel Prize.", first=True)
    assert {r.kind: r.answers for r in person} == {"occupation": ["physicist"],
                                                   "nationality": ["Polish", "Poland"]}
    assert all(r.evidence.startswith("Marie Curie was") and r.passage_id == "7" for r in person)
    film = relations_of_passage("Tokyo Story", "Arts", "9", "Tokyo Story is a 1953 Japanese drama film directed by "
                                "Yasujirō Ozu and starring Chishū Ryū. It was released in 1953 in Japan.", first=True)
    assert {r.kind: r.answers[0] for r in film} == {"category": "1953 Japanese drama film",
                                                    "creator:directed": "Yasujirō Ozu", "year:released": "1953"}
    city = relations_of_passage("Lima", "Geography", "3", "Lima is the capital and largest city of Peru, as well as "
                                "a primate city. Its port is Callao.", first=True)
    assert [(r.kind, r.answers) for r in city] == [("capital_of", ["Peru"])]  # "the capital" names no category
    taoism = relations_of_passage("Taoism", "Philosophy", "5", "Taoism is a philosophical and religious tradition "
                                  "indigenous to China.", first=True)
    assert [r.answers[0] for r in taoism] == ["philosophical and religious tradition"]  # not "philosophical"
    salt = relations_of_passage("Salt", "Science", "6", "Salt is a mineral composed primarily of sodium chloride.",
                                first=True)
    assert [r.answers[0] for r in salt] == ["mineral"]
    planet = relations_of_passage("Planet", "Science", "8", "A planet is a large, rounded astronomical body that "
                                  "orbits a star.", first=True)
    assert [r.answers[0] for r in planet] == ["large, rounded astronomical body"]  # not "large"
    for title, sentence, head in (
            ("France", "France is a country primarily located in Western Europe.", "country"),
            ("Giant panda", "The giant panda is a bear species endemic to China.", "bear species"),
            ("Cattle", "Cattle is a large domesticated bovine originating in Asia.", "large domesticated bovine"),
            ("Bantu languages", "The Bantu languages are a language family in Africa.", "language family"),
            ("Chain", "A chain is a serial assembly of connected pieces.", "serial assembly")):
        found = relations_of_passage(title, "Science", "1", sentence, first=True)
        assert [r.answers[0] for r in found] == [head]  # no adverb or post-nominal adjective left on the head
    cornell = relations_of_passage("Cornell University", "Society", "2", "Cornell University is a private Ivy League "
                                   "research university based in Ithaca, New York.", first=True)
    assert cornell == []  # too long to name the thing by, and cut it would read "private Ivy League research"
    later = relations_of_passage("Lima", "Geography", "4", "Lima is a city of contrasts.", first=False)
    assert later == []  # definitions come only from an article's first sentence
    for r in person + film + city:
        assert r.answers[0] in r.evidence  # the canonical answer is a span of the evidence (aliases may follow)


def test_span_facts_ask_for_any_sentences_name_year_or_count():
    import random

    from smart.data import demo_data as D
    text = ("Sofia is the capital and largest city of Bulgaria. It is situated in the Sofia Valley at the foot of the "
            "Vitosha mountain, in the western part of the country. The city is built west of the Iskar river. "
            "Its mayor was elected by Bulgarians. It had 1,200 residents in 1880.")
    facts = D.span_facts("Sofia", "Geography", "5", text)
    asked = {r.answers[0]: r.extra["questions"][0] for r in facts}
    assert asked == {"Bulgaria": "Sofia is the capital and largest city of what?",
                     "Vitosha": "Sofia is situated in the Sofia Valley at the foot of which mountain?",
                     "Iskar": "Sofia is built west of which river?",  # "The city" named by the title
                     "1,200": "Sofia had how many residents in 1880?", "1880": "Sofia had 1,200 residents in what year?"}
    for r in facts:  # a span of its evidence sentence, never given away by the question
        assert r.answers[0] in r.evidence and r.answers[0] not in r.extra["questions"][0] and r.passage_id == "5"
        assert D.query_of(r).startswith("Sofia ") and r.kind in D.SPAN_KINDS
    assert D.query_of(next(r for r in facts if r.answers[0] == "Vitosha")) == "Sofia mountain foot"
    assert D.span_facts("Thriller", "", "1", "It was produced by Quincy Jones.")[0].extra["questions"][0] == \
        "Thriller was produced by whom?"
    assert D.span_facts("Mozart", "", "1", "Mozart was a Classical composer.") == []  # an adjective, not a thing
    assert D.span_facts("Uganda", "", "1", "Uganda borders the Democratic Republic of the Congo.") == []  # part of a name
    year = next(r for r in facts if r.answers[0] == "1880")
    shifted = D._distractors(year, [], random.Random(0), 3)
    assert len(set(shifted)) == 3 and all(re.fullmatch(r"1[89]\d\d", y) and y != "1880" for y in shifted)
    count = next(r for r in facts if r.answers[0] == "1,200")
    assert all(re.fullmatch(r"\d{1,3}(?:,\d{3})*", c) and c != "1,200" for c in D._distractors(count, [], random.Random(0), 3))
    river = next(r for r in facts if r.answers[0] == "Iskar")
    pool = [river, D.Relation("Paris", "Geography", "span:name", ["Seine"], "Paris lies on the Seine.", "9")]
    assert river.extra["questions"] == [asked["Iskar"], "Which river is Sofia built west of?"]  # as people ask
    assert D.fronted_question("Thriller was produced by whom?", "Thriller (album)") == "Who produced Thriller?"
    assert D.fronted_question("The Louvre was opened in what year?", "Louvre") == "When was the Louvre opened?"
    assert D.fronted_question("Sofia is the capital and largest city of what?", "Sofia") is None  # "and": no
    for split in ("train", "dev"):  # a span fact asks its own questions in either split
        asked_now = {D.make_item("open", river, pool, random.Random(seed), split)["instruction"] for seed in range(8)}
        assert asked_now == set(river.extra["questions"])
    true, false = D.make_claims(river, pool, random.Random(0), "train", (True, False))
    assert (true["claim"], false["claim"]) == ("Sofia is built west of the Iskar river.",
                                               "Sofia is built west of the Seine river.")
    assert false["output"] == "Claim: Seine | Fact: Iskar | Verdict: false"
    lima = D.Relation("Lima", "Geography", "capital_of", ["Peru"], "Lima is the capital of Peru.", "3")
    assert D.sample_relations(facts + [lima], random.Random(0)) == [lima]  # span facts only when asked for
    mixed = D.sample_relations(facts + [lima], random.Random(0), spans_per_round=6)
    assert lima in mixed and len(mixed) == 2 and mixed[1 - mixed.index(lima)] in facts  # one fact per article


def test_demo_items_shapes_and_phrasings():
    import random

    from smart.data import demo_data as D
    rels = [D.Relation(f"Person {i}", "People", "nationality", [dem, D.DEMONYMS[dem]], f"Person {i} was a {dem} poet.",
                       str(i), "was") for i, dem in enumerate(["German", "French", "Italian", "Spanish", "German"])]
    rng = random.Random(0)
    pool = rels
    opened = D.make_item("open", rels[0], pool, rng, "dev")
    assert opened["output"] == "German" and opened["golds"] == ["German", "Germany"]
    assert any(t.format(t="Person 0") == opened["instruction"] for t in D.DEV_QUESTIONS["nationality"])
    choice = D.make_item("choice", rels[0], pool, rng, "train")
    texts = choice["choices"]["text"]
    assert len(set(texts)) == 4 and texts[LABEL_INDEX[choice["answerKey"]]] == "German"
    assert choice["output"] == f"German ({choice['answerKey']})"  # the text, then the label: always names a choice
    assert sorted(t for t in texts if t != "German") == ["French", "Italian", "Spanish"]  # never the gold again
    claims = [D.make_item("claim", rels[0], pool, random.Random(s), "train") for s in range(20)]
    assert {c["golds"][0] for c in claims} == {"true", "false"}
    for c in claims:  # a false claim changes exactly the value: it no longer holds the gold
        assert ("German" in c["claim"] or "Germany" in c["claim"]) == (c["golds"] == ["true"])
        said = c["claim_value"]  # the claim's span, the fact's span, then the verdict
        assert said in c["claim"] and (said in ("German", "Germany")) == (c["golds"] == ["true"])
        assert c["fact_value"] == "German" and c["output"] == f"Claim: {said} | Fact: German | Verdict: {c['golds'][0]}"
    # the evidence's own clause, the value swapped (and its article fixed): exactly one fact changed
    person = D.Relation("Alan Turing", "People", "nationality", ["English", "England"],
                        "Alan Turing (1912-1954) was an English mathematician, who founded computer science.", "1")
    assert D.sentence_claim(person, "English") == "Alan Turing was an English mathematician."
    assert D.sentence_claim(person, "German") == "Alan Turing was a German mathematician."
    room = D.Relation("Kitchen", "", "category", ["room"], "A kitchen is a room used for cooking.", "2")
    assert D.sentence_claim(room, "vehicle") == "A kitchen is a vehicle."  # "used for cooking" fits the room only
    assert D.sentence_claim(D.Relation("Morocco", "", "capital", ["Rabat"], "Its capital is Rabat.", "3"), "Rabat") \
        is None  # whose capital?
    restated = [D.make_item("claim", rels[0], pool, random.Random(s), "train")["claim"] for s in range(20)]
    assert any(c.startswith("Person 0 was a") for c in restated) and any("Person 0 was a" not in c for c in restated)
    for seed in range(6):  # a training pair: one fact, one phrasing, the value alone differs
        true, false = D.make_claims(rels[0], pool, random.Random(seed), "train", (True, False))
        assert (true["golds"], false["golds"]) == (["true"], ["false"]) and true["evidence"] == false["evidence"]
        differ = [(a, b) for a, b in zip(true["claim"].split(), false["claim"].split()) if a != b and b not in ("a", "an")]
        assert len(true["claim"].split()) == len(false["claim"].split()) and len(differ) == 1, (true, false)
    pairs = D.compare_pairs(rels, 2, random.Random(1))
    assert pairs and all(a.title != b.title for a, b in pairs)
    # train and dev phrasings never overlap
    for base in D.TRAIN_QUESTIONS:
        assert not set(D.phrasings("train", "open", base)) & set(D.phrasings("dev", "open", base))
        assert not set(D.phrasings("train", "claim", base)) & set(D.phrasings("dev", "claim", base))
        assert not set(D.phrasings("train", "choice", base)) & set(D.phrasings("dev", "choice", base))


LABEL_INDEX = {"A": 0, "B": 1, "C": 2, "D": 3}


def test_training_passages_keep_retrieval_order():
    import random

    from smart.data import demo_data as D
    class Store:
        def get(self, pid):
            return {"title": "Gold", "text": "the evidence sentence."}

    hits = [{"id": str(i), "title": f"T{i}", "text": f"text {i}", "score": 1.0} for i in range(6)]
    item = {"queries": ["q"], "evidence_passages": ["2"], "evidence": ["text 2"]}
    ctxs = D.training_ctxs(item, hits, Store(), 3, miss=False, rng=random.Random(0))
    assert [c["id"] for c in ctxs] == ["0", "1", "2"]  # retrieved: kept where retrieval ranked it
    missed = {**item, "evidence_passages": ["9"], "evidence": ["the evidence sentence."]}
    ctxs = D.training_ctxs(missed, hits, Store(), 3, miss=False, rng=random.Random(0))
    assert len(ctxs) == 3 and sum(c["id"] == "9" for c in ctxs) == 1  # not retrieved: put in place of one
    assert [c["id"] for c in ctxs if c["id"] != "9"] in (["0", "1"], ["0", "2"], ["1", "2"])
    ctxs = D.training_ctxs(item, hits, Store(), 3, miss=True, rng=random.Random(0))
    assert [c["id"] for c in ctxs] == ["0", "1", "3"]  # a miss: every evidence passage removed
    ctxs = D.training_ctxs({**item, "queries": ["q", "r"]}, hits, Store(), 2, miss=True, rng=random.Random(0))
    assert [c["id"] for c in ctxs] == ["0", "1", "3", "4"]


@pytest.mark.slow
def test_demo_builder_tiny(tmp_path, tiny_corpus):
    from smart.data.demo_data import DEV_TASKS, build_demo_data
    from smart.evaluation.tasks import load_examples

    corpus_path, passages, embeddings = tiny_corpus
    stats = build_demo_data(tmp_path / "demo", n_train=40, n_dev=5, passages=str(passages),
                            passages_embeddings=embeddings, corpus_json=corpus_path)
    longs = [json.loads(x) for x in (tmp_path / "demo" / "train_long.jsonl").read_text().splitlines()]
    shorts = [json.loads(x) for x in (tmp_path / "demo" / "train_short.jsonl").read_text().splitlines()]
    assert 30 <= len(longs) <= 40 and stats["rejected"] == {}
    assert all(T.validate_record(r) == [] for r in longs + shorts)
    assert {r["dataset_name"] for r in longs} >= {"demo_open", "demo_claim", "demo_choice"}
    no_facts = [r for r in longs if "[Relevant]" not in r["output"]]
    assert 0.05 <= len(no_facts) / len(longs) <= 0.4  # retrieval misses: every passage irrelevant, no [Cite]
    assert all("[Cite]" not in r["output"] for r in no_facts)
    assert stats["types"].get("generator_no_facts", 0) == len(no_facts)
    claims = [r for r in longs if r["dataset_name"] == "demo_claim"]
    assert claims
    for r in claims:  # with a located fact the verdict follows the fact's value; a miss answers the label alone
        answer = T.parse_answer(r["output"].split(T.GENERATOR)[1])[0]
        reasoned = r"Claim: [^\n]+ \| Fact: [^\n]+ \| Verdict: (?:true|false)"
        assert re.fullmatch(reasoned if T.RELEVANT in r["output"] else "true|false", answer), answer
    dev_questions = set()
    for task in DEV_TASKS:  # the paper's file shapes, read by the eval runner's own loader
        examples = load_examples(task, tmp_path / "demo" / f"{task}_dev.jsonl", ndocs=3)
        assert len(examples) == 5 and stats["dev"][task]["n"] == 5
        dev_questions |= {ex.question for ex in examples}
    train_requests = {r["instruction"] + r["input"] for r in longs}
    items = [json.loads(x) for x in (tmp_path / "demo" / "work" / "items.jsonl").read_text().splitlines()]
    train_subjects = {q.split(" ")[0] for i in items for q in i["queries"]}
    assert not any(q in r for q in dev_questions for r in train_requests)
    assert train_subjects  # the queries name the subject, never the request itself
    assert not any(r["instruction"].split("</eoi>")[0] in i["queries"] for r in longs for i in items[:3])


@pytest.mark.slow
def test_create_data_script_offline(tmp_path, tiny_corpus):
    corpus_path, passages, embeddings = tiny_corpus
    corpus = json.loads(corpus_path.read_text())
    from smart.data.convert import content_words

    def question(article: dict) -> str:  # the answer-guided teacher wants a request word beside the answer's own
        own = set(content_words(article["title"]))
        word = next((w for w in content_words(article["extract"].split(". ")[0]) if w not in own), "topic")
        return f"Which {word} is {article['title']}?"

    source = [{"id": i, "question": question(a), "answers": [a["title"]]} for i, a in enumerate(corpus.values())]
    write_jsonl(tmp_path / "qa.jsonl", source + [{"id": "bad", "question": "no answer", "answers": []}])
    env = {**os.environ, "TEACHER": "answer", "PASSAGES": str(passages), "EMBEDDINGS": embeddings, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "data_creation" / "create_data.sh"), str(tmp_path / "qa.jsonl"), "popqa",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    longs = [json.loads(x) for x in (tmp_path / "out" / "popqa_long.jsonl").read_text().splitlines()]
    shorts = (tmp_path / "out" / "popqa_short.jsonl").read_text().splitlines()
    assert len(longs) == len(source) and len(shorts) == 3 * len(source)
    stats = json.loads((tmp_path / "out" / "popqa_stats.json").read_text())
    assert stats["items_with_relevant"] > 0.8 and "intent_fallback" not in stats["flags"]  # the teacher's own queries
    assert stats["flags"].get("no_fact_located", 0) == round((1 - stats["items_with_relevant"]) * len(source))
