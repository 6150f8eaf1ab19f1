"""The demo's real questions (split, sample, dev files) and the offline answer-guided teacher, end to end through
data_creation/create_data.sh."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from smart import trajectory as T
from smart.data.convert import FACT_VERIFICATION, MULTIPLE_CHOICE, OPEN_QA, convert_row
from smart.data.intent import keyword_query
from smart.data.locator import best_sentence, locate_by_answer, with_lead
from smart.data.real_questions import (DEV_TASK, SHAPES, check_row, even_by_label, load_real_questions, parse_mix,
                                       split, training_sample)
from smart.evaluation.metrics import match
from smart.io import InputError, write_jsonl

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "data_creation" / "real_questions"
PREPARE = REPO / "data_creation" / "prepare_real_questions.py"

OPEN = {"id": "q1", "question": "What is the capital of Somalia?", "answers": ["Mogadishu"], "source": "s",
        "evidence": "Mogadishu is the capital and most populous city of Somalia."}
CLAIM = {"id": "c1", "question": "Somalia is in Africa.", "answers": ["true"], "label": "SUPPORTS",
         "evidence": "[Somalia #0] Somalia is a country in the Horn of Africa."}
CHOICE = {"id": "m1", "question": "Which metal is magnetic?", "answerKey": "B",
          "choices": [{"label": "A", "text": "copper"}, {"label": "B", "text": "iron"}]}


# ----------------------------------------------------------------------------------------------- split and sample
def test_shipped_files_load_split_and_never_share_a_question():
    by_shape = load_real_questions(SHIPPED)
    assert all(len(by_shape[s]) >= 100 for s in SHAPES)
    assert not any("curatedtrec" in r["source"] for rows in by_shape.values() for r in rows)  # regex answers
    assert all(r.get("source") and r.get("source_location") for rows in by_shape.values() for r in rows)
    pool, dev = split(by_shape, 200)
    assert len(dev["open"]) == 200 and len(dev["claim"]) == len(by_shape["claim"]) // 2
    dev_questions = {" ".join(r["question"].lower().split()) for rows in dev.values() for r in rows}
    train_questions = {" ".join(r["question"].lower().split()) for rows in pool.values() for r in rows}
    assert not dev_questions & train_questions
    assert split(by_shape, 200) == (pool, dev)  # seeded


def test_training_sample_follows_the_mix_and_moves_a_shortfall():
    pool = {"open": [{"id": f"o{i}"} for i in range(100)],
            "claim": [{"id": f"c{i}", "answers": ["true"]} for i in range(10)],
            "choice": [{"id": f"m{i}"} for i in range(100)]}
    items = training_sample(pool, 60, parse_mix("open=2,claim=1,choice=1"))
    kinds = [r["id"][0] for r in items]
    assert len(items) == 60 == len({r["id"] for r in items})
    assert kinds.count("c") == 10 and kinds.count("o") == 30 and kinds.count("m") == 15 + 5  # most left: choice
    with pytest.raises(InputError, match="only 210"):
        training_sample(pool, 500, parse_mix("open=1"))
    with pytest.raises(InputError, match="unknown shape 'dialogue'"):
        parse_mix("dialogue=1")


def test_claims_are_drawn_evenly_by_label():
    claims = [{"id": f"t{i}", "answers": ["true"]} for i in range(30)] + [{"id": f"f{i}", "answers": ["false"]}
                                                                          for i in range(10)]
    pool = {"open": [], "claim": claims, "choice": []}
    for n, falses in ((20, 10), (10, 5), (11, 5), (36, 10)):  # a label short of rows leaves the rest to the other
        items = training_sample(pool, n, parse_mix("claim=1"))
        assert len(items) == n == len({r["id"] for r in items})
        assert sum(r["answers"] == ["false"] for r in items) == falses
    rng = random.Random(0)
    three = [{"answers": [label]} for label, k in (("a", 1), ("b", 5), ("c", 9)) for _ in range(k)]
    assert Counter(r["answers"][0] for r in even_by_label(rng, three, 9, True)) == {"a": 1, "b": 4, "c": 4}
    assert len(even_by_label(rng, three, 9, False)) == 9


@pytest.mark.parametrize("row, field", [
    ({"question": "q?", "answers": ["a"]}, "id"),
    ({"id": "x", "question": "q?", "answers": []}, "answers"),
    ({"id": "x", "question": "q?", "answers": ["a"], "evidence": ["list"]}, "evidence"),
    ({**CHOICE, "answerKey": "E"}, "answerKey"),
])
def test_bad_rows_name_file_line_and_field(row, field):
    with pytest.raises(InputError, match=rf"f\.jsonl:3.*{field}"):
        check_row(row, "f.jsonl", 3)


def test_loader_rejects_duplicate_ids_and_empty_folders(tmp_path):
    with pytest.raises(InputError, match="no real-question files"):
        load_real_questions(tmp_path)
    write_jsonl(tmp_path / "a.jsonl", [OPEN])
    write_jsonl(tmp_path / "b.jsonl", [OPEN])
    with pytest.raises(InputError, match=r"b\.jsonl:1.*duplicate id 'q1'"):
        load_real_questions(tmp_path)


def test_prepare_cli_writes_dev_files_in_the_paper_shapes(tmp_path):
    from smart.evaluation.tasks import load_examples

    folder = tmp_path / "questions"
    write_jsonl(folder / "mixed.jsonl", [{**row, "id": f"{row['id']}{i}", "question": f"{row['question']} ({i})"}
                                         for row in (OPEN, CLAIM, CHOICE) for i in range(6)])
    done = subprocess.run([sys.executable, str(PREPARE), "--questions_dir", str(folder), "--output_dir", str(tmp_path / "out"),
                           "--n_train", "6", "--n_dev", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for shape, task in DEV_TASK.items():
        examples = load_examples(task, tmp_path / "out" / "dev_questions" / f"{task}.jsonl", need_passages=False)
        assert len(examples) == 2
    assert [ex.golds for ex in load_examples("pubhealth", tmp_path / "out" / "dev_questions" / "pubhealth.jsonl",
                                             need_passages=False)] == [["true"], ["true"]]
    train = [json.loads(x) for x in (tmp_path / "out" / "train_questions.jsonl").read_text().splitlines()]
    assert len(train) == 6 and train[0]["evidence"] and not train[0]["evidence"].startswith("[")
    bad = subprocess.run([sys.executable, str(PREPARE), "--questions_dir", str(tmp_path / "none"), "--output_dir",
                          str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "no real-question files" in bad.stderr and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------------------------- the teacher
def item(row: dict) -> dict:
    return convert_row(check_row(row, "f", 1), "real", 1)


PASSAGE = {"id": "9", "title": "Somalia", "text": "Somalia is a country in the Horn of Africa. It borders Ethiopia. "
                                                  "Its capital is Mogadishu, the largest city of Somalia. Mogadishu has a port."}


def test_keyword_query_drops_function_words():
    assert keyword_query(item(OPEN)) == "capital Somalia"
    assert keyword_query(item(CHOICE)) == "metal magnetic"
    assert keyword_query(item(CLAIM)) == "Somalia Africa"


def test_answer_locator_picks_the_sentence_that_answers_not_the_first():
    qa = item({**OPEN, "evidence": ""})
    assert qa["task_type"] == OPEN_QA and qa["answers"] == ["Mogadishu"]
    assert best_sentence(qa, PASSAGE) == "Its capital is Mogadishu, the largest city of Somalia."
    located = locate_by_answer({**qa, "answers": ["mogadishu"], "output": "mogadishu", "ctxs": [PASSAGE, {**PASSAGE, "title": "Port", "text": "Mogadishu."}]})
    assert [c["relevant"] for c in located["ctxs"]] == [True, False]  # an answer alone, with no question word, is no fact
    assert located["output"] == "Mogadishu" and located["flags"] == ["answer_from_fact"]  # spelled as the fact spells it


def test_answer_locator_fact_keeps_the_passages_lead_up_to_three_sentences():
    qa = item({**OPEN, "evidence": ""})
    located = locate_by_answer({**qa, "ctxs": [PASSAGE]})
    assert located["ctxs"][0]["fact"] == ("Somalia is a country in the Horn of Africa. It borders Ethiopia. "
                                          "Its capital is Mogadishu, the largest city of Somalia.")
    text = T.normalize_space(PASSAGE["text"])
    assert with_lead(text, "Somalia is a country in the Horn of Africa.") == "Somalia is a country in the Horn of Africa."
    assert with_lead(text, "Mogadishu has a port.") == "Mogadishu has a port."  # the 4th sentence: alone
    assert with_lead("A b. " + text, "Its capital is Mogadishu, the largest city of Somalia.") == (
        "Its capital is Mogadishu, the largest city of Somalia.")  # past MAX_FACT_SENTENCES


def test_answer_locator_for_claims_and_choices():
    claim = item(CLAIM)
    assert claim["task_type"] == FACT_VERIFICATION and claim["evidence"] == ["Somalia is a country in the Horn of Africa."]
    assert best_sentence(claim, PASSAGE) == "Somalia is a country in the Horn of Africa."
    assert best_sentence({**claim, "evidence": []}, {**PASSAGE, "text": "Ethiopia borders Kenya."}) is None
    mc = item(CHOICE)
    assert mc["task_type"] == MULTIPLE_CHOICE and mc["answers"] == ["iron"] and mc["output"] == "iron (B)"
    ctx = {"id": "1", "title": "Iron", "text": "Iron is common. Iron is a magnetic metal. Copper is not magnetic."}
    assert best_sentence(mc, ctx) == "Iron is a magnetic metal."
    missed = locate_by_answer({**mc, "ctxs": [{**ctx, "text": "Copper conducts heat."}]})
    assert missed["flags"] == ["no_fact_located"] and missed["output"] == "iron (B)"


def test_answer_step_keeps_the_model_answer_only_where_it_holds_the_gold(tmp_path):
    from openai_stub import StubOpenAI

    from smart.data.answer import MAX_ANSWER_WORDS, answer_span, clause_span, run_answers
    from smart.data.teacher import OpenAITeacher

    # the model's first paragraph whole, its complete sentences up to MAX_ANSWER_WORDS words
    assert answer_span("Its capital is Mogadishu. It is large.\nMore.", ["mogadishu"]) == \
        "Its capital is Mogadishu. It is large."
    assert answer_span("It lies in Africa. The capital is Mogadishu.", ["Mogadishu"]) == \
        "It lies in Africa. The capital is Mogadishu."
    assert answer_span("\n\nMogadishu!", ["Mogadishu"]) == "Mogadishu!"
    assert answer_span("It was founded in 1930, with the exception of 1942.", ["1930"]) == \
        "It was founded in 1930, with the exception of 1942."
    assert answer_span("Its capital is Mogadishu. It lies on the coast of", ["Mogadishu"]) == \
        "Its capital is Mogadishu."  # the sentence the token limit cut off is dropped
    assert answer_span("It lies in Africa. The capital is Mogadishu. It lies on", ["Kenya"]) is None
    long_tail = " ".join(["word"] * MAX_ANSWER_WORDS)
    assert answer_span(f"Its capital is Mogadishu. Its {long_tail}.", ["Mogadishu"]) == "Its capital is Mogadishu."
    # past the words kept: the first sentence, clause-cut after the gold answer, or nothing
    assert answer_span(f"Its capital is Mogadishu, with {long_tail}.", ["Mogadishu"]) == "Its capital is Mogadishu."
    assert answer_span(f"It lies in Africa. Its {long_tail}. Its capital is Mogadishu.", ["Mogadishu"]) is None
    assert clause_span("It was founded in 1930, with the exception of 1942.", ["1930"]) == "It was founded in 1930."
    assert clause_span("In 1889 (Paris), the tower opened.", ["Paris"]) == "In 1889 (Paris)."
    assert clause_span("The tower is in Paris - a city.", ["Paris"]) == "The tower is in Paris."
    assert clause_span("Its capital, since 1960, is Mogadishu.", ["Mogadishu"]) == "Its capital, since 1960, is Mogadishu."
    assert clause_span("It lies in Africa. The capital is Mogadishu.", ["Mogadishu"]) is None  # first sentence only
    fact = "Its capital is Mogadishu, the largest city of Somalia."
    located_fact = {**PASSAGE, "relevant": True, "fact": fact}
    # key -> (gold, located passage, reply to the facts prompt, reply to vanilla RAG's prompt)
    cases = {"capital": ("Mogadishu", PASSAGE, None, "The capital of Somalia is Mogadishu, on the coast. It is large."),
             "city": ("Mogadishu", located_fact, "The largest city is Mogadishu.", "Somalia."),
             "port": ("Mogadishu", located_fact, "It is Somalia.", "The port is Mogadishu."),
             "coast": ("Mogadishu", located_fact, "It is Somalia.", "It is Kenya."),
             "river": ("Shebelle", located_fact, "It is the Nile.", "It is the Nile.")}
    located = [{**item({**OPEN, "id": key, "question": f"Which {key}?", "answers": [gold]}), "ctxs": [ctx]}
               for key, (gold, ctx, _, _) in cases.items()]
    located.append({**item(CLAIM), "ctxs": [PASSAGE]})
    seen = []

    def respond(messages: list[dict]) -> str:
        content = messages[-1]["content"]
        seen.append(content)
        key = next(k for k in cases if f"Which {k}?" in content)
        by_facts = content.startswith(f"Passages:\n[1] Somalia\n{fact}\n\n")
        return cases[key][2] if by_facts else cases[key][3]

    write_jsonl(tmp_path / "located.jsonl", located)
    with StubOpenAI(respond=respond) as server:
        summary = run_answers(str(tmp_path / "located.jsonl"), str(tmp_path / "answered.jsonl"),
                              OpenAITeacher("stub", base_url=server.url, max_retries=1, backoff_base=0.01), batch_size=4)
    rows = [json.loads(line) for line in (tmp_path / "answered.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in located]  # input order, chunk by chunk
    out = {r["id"]: r for r in rows}
    assert out["real_capital"]["output"] == "The capital of Somalia is Mogadishu, on the coast. It is large."
    assert out["real_capital"]["flags"] == ["answer_by_model"]
    assert out["real_city"]["output"] == "The largest city is Mogadishu."
    assert out["real_city"]["flags"] == ["answer_by_facts"]  # vanilla RAG's reply missed, the facts' reply holds it
    assert out["real_port"]["output"] == "The port is Mogadishu." and out["real_port"]["flags"] == ["answer_by_model"]
    assert out["real_coast"]["output"] == "Its capital is Mogadishu." and out["real_coast"]["flags"] == ["answer_by_fact_span"]
    assert out["real_river"]["output"] == "Shebelle" and out["real_river"]["flags"] == ["answer_gold"]
    assert out["real_c1"] == {**located[-1]}  # a claim keeps its label, unasked
    assert len(seen) == 8 and all(c.startswith("Passages:\n[1] Somalia\n") for c in seen)
    # vanilla RAG's prompt for all five, the facts prompt for the three with a located fact whose RAG reply missed
    assert sum(c.startswith(f"Passages:\n[1] Somalia\n{fact}\n\n") for c in seen) == 3
    assert summary.flags == {"answer_by_model": 2, "answer_by_facts": 1, "answer_by_fact_span": 1, "answer_gold": 1}


def test_local_teacher_answers_one_chunk_in_one_call_and_fails_a_chunk_whole(tmp_path):
    """The answer step with a local backend: one `chat` call per chunk and prompt kind, in input order (the same
    batches every run); a backend failure fails its chunk's items, unwritten, and a rerun writes them."""
    from smart.data.answer import run_answers
    from smart.data.teacher import LocalTeacher

    calls: list[list[str]] = []
    broken = {"on": True}

    class Backend:
        def chat(self, conversations, max_new_tokens):
            questions = [c[-1]["content"].rsplit("\n", 1)[-1] for c in conversations]
            calls.append(questions)
            if broken["on"] and any("q4" in q for q in questions):
                raise RuntimeError("out of memory")
            return [f"It is gold{q.split('q')[-1].rstrip('?')}." for q in questions]

        def close(self):
            pass

    teacher = LocalTeacher("stub", "stub", max_tokens=16, backend=Backend())
    located = [{**item({**OPEN, "id": f"q{i}", "question": f"Which q{i}?", "answers": [f"gold{i}"]}), "ctxs": [PASSAGE]}
               for i in range(6)]
    write_jsonl(tmp_path / "located.jsonl", located)
    summary = run_answers(str(tmp_path / "located.jsonl"), str(tmp_path / "answered.jsonl"), teacher, batch_size=3)
    assert calls == [["Which q0?", "Which q1?", "Which q2?"], ["Which q3?", "Which q4?", "Which q5?"]]
    assert summary.written == 3 and summary.failed_ids == ["real_q3", "real_q4", "real_q5"]
    broken["on"] = False
    summary = run_answers(str(tmp_path / "located.jsonl"), str(tmp_path / "answered.jsonl"), teacher, batch_size=3)
    rows = [json.loads(line) for line in (tmp_path / "answered.jsonl").read_text().splitlines()]
    assert [r["output"] for r in rows] == [f"It is gold{i}." for i in range(6)]
    assert summary.done_before == 3 and summary.written == 3 and not summary.failed_ids


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory, encoder_dir):
    """The corpus articles of 4 shipped questions of each shape (plus 40 others), and those 12 questions."""
    from smart.defaults import corpus_json
    from smart.retrieval.passages import vital_articles_to_tsv
    from smart.retrieval.retriever import embed_passages

    by_shape = load_real_questions(SHIPPED)
    rows = [r for s in SHAPES for r in by_shape[s][:4]]
    corpus = json.loads(Path(corpus_json()).read_text())
    wanted = {t for r in rows for t in r["titles"]}
    keep = {k: a for k, a in corpus.items() if a["title"] in wanted} | {k: corpus[k] for k in sorted(corpus)[::250]}
    folder = tmp_path_factory.mktemp("real_corpus")
    (folder / "corpus.json").write_text(json.dumps(keep))
    vital_articles_to_tsv(folder / "corpus.json", folder / "psgs.tsv")
    embed_passages(str(encoder_dir), str(folder / "psgs.tsv"), str(folder / "emb"), progress=False)
    return rows, folder / "psgs.tsv", str(folder / "emb" / "*")


@pytest.mark.slow
def test_create_data_over_real_questions_end_to_end(tmp_path, real_corpus, embedded_llm_dir):
    rows, passages, embeddings = real_corpus
    write_jsonl(tmp_path / "train.jsonl", rows)
    env = {**os.environ, "TEACHER": "answer", "PASSAGES": str(passages), "EMBEDDINGS": embeddings,
           "PYTHON": sys.executable, "TOKENIZER": str(embedded_llm_dir), "ANSWER_TEACHER": "hf",
           "ANSWER_MODEL": str(embedded_llm_dir), "RESTATE_REQUEST": "1"}
    done = subprocess.run(["bash", str(REPO / "data_creation" / "create_data.sh"), str(tmp_path / "train.jsonl"), "real",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    longs = [json.loads(x) for x in (tmp_path / "out" / "real_long.jsonl").read_text().splitlines()]
    shorts = [json.loads(x) for x in (tmp_path / "out" / "real_short.jsonl").read_text().splitlines()]
    assert len(longs) == len(rows) and all(T.validate_record(r) == [] for r in longs + shorts)
    # RESTATE_REQUEST=1: the open questions restated, no claim or multiple-choice request
    assert all(bool(T.parse_long(r["output"])[0].request) is (not r["input"]) for r in longs)
    located = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "work" / "answered.jsonl").read_text().splitlines())}
    assert {r["task_type"] for r in located.values()} == {OPEN_QA, FACT_VERIFICATION, MULTIPLE_CHOICE}
    with_facts = [r for r in located.values() if any(c["relevant"] for c in r["ctxs"])]
    assert len(with_facts) >= 0.75 * len(rows)  # each question's article is in the corpus
    for r in with_facts:
        facts = [c["fact"] for c in r["ctxs"] if c["relevant"]]
        assert all(f in " ".join(c["text"].split()) for f, c in zip(facts, [c for c in r["ctxs"] if c["relevant"]]))
        if r["task_type"] == OPEN_QA:  # the model's answer holding a gold one, or the gold as the fact spells it
            assert match(r["output"], r["answers"]) if "answer_gold" not in r["flags"] else r["output"] in facts[0]
        if r["task_type"] == MULTIPLE_CHOICE:  # the correct option, or the item's evidence sentence
            assert any(r["answers"][0].lower() in f.lower() or f in r["evidence"][0] for f in facts)
    stats = json.loads((tmp_path / "out" / "real_stats.json").read_text())
    assert stats["items"] == len(rows) and stats["queries_per_item"] == 1.0
    assert stats["flags"].get("no_fact_located", 0) == len(rows) - len(with_facts)
    answered = ("answer_by_facts", "answer_by_model", "answer_gold")
    assert sum(stats["flags"].get(flag, 0) for flag in answered) == 4  # the open questions only
