"""The inference pipeline driven by a scripted fake backend: stage batching, well-formed and malformed outputs
(exact fallback counts), baselines, and static vs live retrieval over an index equal to the ctxs."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from smart import trajectory as tj
from smart.evaluation.tasks import load_examples
from smart.inference import agents
from smart.inference.backends import Backend

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


class ScriptedBackend(Backend):
    """Answers each stage from a script keyed by the question in the prompt; records every call."""

    name = "scripted"

    def __init__(self, script: dict[str, dict[str, str]]):
        super().__init__()
        self.script = script
        self.calls: list[tuple[str, list[str]]] = []

    def _stage(self, prompt: str) -> str:
        for suffix, stage in ((tj.RECONSTRUCTOR, "intent"), (tj.LOCATOR, "locator"), (tj.GENERATOR, "generator")):
            if prompt.endswith(suffix):
                return stage
        return "chat"

    def _reply(self, prompt: str, stage: str) -> str:
        for question, replies in self.script.items():
            if question in prompt:
                return replies.get(stage, replies.get("chat", ""))
        raise AssertionError(f"unscripted prompt: {prompt[:80]}")

    def _generate(self, prompts, max_new_tokens, stop, add_special_tokens):
        stages = {self._stage(p) for p in prompts}
        assert len(stages) == 1, "one generate call must hold one stage"
        stage = stages.pop()
        self.calls.append((stage, prompts))
        return [self._reply(p, stage) + " trailing text after the stop" for p in prompts]

    def chat(self, conversations, max_new_tokens, stop=None):
        prompts = [c[-1]["content"] for c in conversations]
        self.calls.append(("chat", prompts))
        return [self._reply(p, "chat") for p in prompts]


def good(question: str) -> dict[str, str]:
    return {"intent": f"Search({question}\n second query)</eor>",
            "locator": "[Relevant]: [1] Title\n a fact</eol>\n[Irrelevant]: [2] Lacking Supporting Facts</eol>",
            "generator": "the answer\n[Cite]: [1]</eog>"}


@pytest.fixture
def examples():
    return load_examples("qa", FIXTURES / "qa.jsonl", ndocs=3)


def test_smart_well_formed_is_stage_batched(examples):
    backend = ScriptedBackend({ex.question: good(ex.question) for ex in examples})
    rows = agents.run("smart", backend, examples, agents.static_retrieval, agents.Limits())
    assert [stage for stage, _ in backend.calls] == ["intent", "locator", "generator"]
    assert all(len(prompts) == len(examples) for _, prompts in backend.calls)
    for ex, row in zip(examples, rows):
        assert row["id"] == ex.key and row["fallbacks"] == [] and row["problems"] == []
        assert row["queries"] == [ex.question, "second query"]
        assert [p["id"] for p in row["passages"]] == ex.passage_ids
        assert row["answer"] == "the answer" and row["citations"] == [1]
        assert [f["relevant"] for f in row["facts"]] == [True]
        t, problems = tj.parse_long(row["trajectory"])  # the whole chain reads back as one long trajectory
        assert t.answer == "the answer" and len(t.passages) == 3 and t.passages[0].text == ex.passages[0].text
        assert "trailing text" not in row["trajectory"]
    # the generator continues the locator's context: request, intent, retrieval block and facts
    generator_prompts = backend.calls[2][1]
    assert all(tj.RETRIEVAL_CLOSE in p and p.endswith("</eol>\n\n" + tj.GENERATOR) for p in generator_prompts)


def test_a_chat_prompt_model_gets_the_request_in_its_chat_turn_at_every_stage(examples, tiny_llama_dir):
    """A model trained with --chat_prompt (backend.chat_prompt): every stage's prompt starts with the request
    rendered by the chat template, as in training, and is tokenized without an added BOS; the parsed rows are as
    without it."""
    from transformers import AutoTokenizer

    class Recording(ScriptedBackend):
        def _generate(self, prompts, max_new_tokens, stop, add_special_tokens):
            self.special.add(add_special_tokens)
            return super()._generate(prompts, max_new_tokens, stop, add_special_tokens)

    backend = Recording({ex.question: good(ex.question) for ex in examples})
    backend.tokenizer, backend.chat_prompt, backend.special = AutoTokenizer.from_pretrained(tiny_llama_dir), True, set()
    rows = agents.run("smart", backend, examples, agents.static_retrieval, agents.Limits())
    heads = [tj.chat_prompt(backend.tokenizer, tj.format_prompt(ex.instruction, ex.input)) for ex in examples]
    assert heads[0].startswith("<|im_start|>") and heads[0].endswith("<|im_start|>assistant\n")
    assert [stage for stage, _ in backend.calls] == ["intent", "locator", "generator"]
    assert all(p.startswith(h) for _, prompts in backend.calls for p, h in zip(prompts, heads))
    assert backend.special == {False}
    assert all(row["fallbacks"] == [] and row["answer"] == "the answer" for row in rows)


def test_a_model_trained_on_restated_requests_reads_the_request_after_the_passages(examples):
    """backend.restated_request: the locator's and the generator's prompts hold the request restated at the end of
    the retrieval block, and the row's trajectory reads back with it; without it (the default), no stage has it."""
    backend = ScriptedBackend({ex.question: good(ex.question) for ex in examples})
    backend.restated_request = True
    rows = agents.run("smart", backend, examples, agents.static_retrieval, agents.Limits())
    for stage, prompts in backend.calls[1:]:
        for ex, prompt in zip(examples, prompts):
            assert f"\nRequest: {tj.restated_request(ex.instruction, ex.input)}{tj.RETRIEVAL_CLOSE}\n\n" in prompt
    for ex, row in zip(examples, rows):
        t, problems = tj.parse_long(row["trajectory"])
        assert problems == [] and t.request == ex.question and len(t.passages) == 3
    plain = ScriptedBackend({ex.question: good(ex.question) for ex in examples})
    agents.run("smart", plain, examples, agents.static_retrieval, agents.Limits())
    assert not any(tj.REQUEST_HEAD in p for _, prompts in plain.calls for p in prompts)


def test_smart_malformed_outputs_take_counted_fallbacks(examples):
    q0, q1, q2 = (ex.question for ex in examples)
    script = {
        q0: {**good(q0), "intent": "I would rather not search."},  # no Search(...)
        q1: {**good(q1), "locator": "these passages are nice", "generator": "Shakespeare</eog>"},  # no </eol>
        q2: {**good(q2), "locator": "nothing relevant here</eol>", "generator": "Jupiter, probably"},  # no facts, no </eog>
    }
    backend = ScriptedBackend(script)
    # the fake's outputs go through Backend.generate, which cuts after the stop string (and keeps it)
    rows = agents.run("smart", backend, examples, agents.static_retrieval, agents.Limits())
    assert Counter(f for r in rows for f in r["fallbacks"]) == {"intent": 1, "locator": 2, "generator": 1}
    assert rows[0]["fallbacks"] == ["intent"] and rows[0]["queries"] == [q0]
    assert rows[1]["fallbacks"] == ["locator"] and rows[1]["answer"] == "Shakespeare" and rows[1]["facts"] == []
    assert rows[2]["fallbacks"] == ["locator", "generator"] and rows[2]["answer"] == "Jupiter, probably trailing text after the stop"
    # answering without facts: the generator sees the request alone, no retrieval block
    prompts = dict(zip((q0, q1, q2), backend.calls[2][1]))
    assert tj.RETRIEVAL_OPEN in prompts[q0]
    for q in (q1, q2):
        assert prompts[q] == tj.format_prompt(q) + tj.GENERATOR
    assert all(r["problems"] for r in rows)


def test_smart_item_without_passages_skips_the_locator(examples):
    backend = ScriptedBackend({ex.question: good(ex.question) for ex in examples})
    rows = agents.run_smart(backend, examples, lambda exs, qs: [[] for _ in exs], agents.Limits())
    assert [stage for stage, _ in backend.calls] == ["intent", "generator"]  # no locator call at all
    assert all(r["answer"] == "the answer" and r["fallbacks"] == [] for r in rows)


@pytest.mark.parametrize("ablation, stages", [("no_intent", ["locator", "generator"]),
                                               ("no_locator", ["intent", "generator"]),
                                               ("generator_only", ["generator"])])
def test_inference_ablation_writes_the_training_ablation_format(examples, ablation, stages):
    """Each agent skipped at inference: only the remaining stages run, and the whole trace is exactly the prompt and
    the ablated long trajectory that `make_ablation_data.py` trains on (`trajectory.render_long` with that ablation)."""
    agents_kept = tj.ABLATIONS[ablation]
    script = {ex.question: {**good(ex.question), "generator": "the answer" + ("\n[Cite]: [1]" * agents_kept.retrieval)
                            + "</eog>"} for ex in examples}
    backend = ScriptedBackend(script)
    method = agents.INFERENCE_ABLATIONS[ablation]
    rows = agents.run(method, backend, examples, agents.static_retrieval, agents.Limits())
    assert [stage for stage, _ in backend.calls] == stages
    for ex, row in zip(examples, rows):
        assert row["method"] == method and row["fallbacks"] == [] and row["problems"] == []
        assert row["answer"] == "the answer"
        queries = [ex.question, "second query"] if agents_kept.intent else [ex.question]
        assert row["queries"] == queries
        passages = ex.passages if agents_kept.retrieval else []
        facts = tj.parse_locator(good(ex.question)["locator"])[0] if agents_kept.locator else []
        expected = tj.Trajectory(queries, passages, facts, "the answer", [1] if passages else [])
        assert row["trajectory"] == tj.format_prompt(ex.instruction, ex.input) + tj.render_long(expected, agents_kept)


def test_baselines_use_the_same_passages_and_request(examples):
    script = {ex.question: {"chat": f"reply to {ex.key}"} for ex in examples}
    backend = ScriptedBackend(script)
    no_ret = agents.run("no_retrieval", backend, examples, agents.static_retrieval, agents.Limits())
    rag = agents.run("vanilla_rag", backend, examples, agents.static_retrieval, agents.Limits())
    assert [c[0] for c in backend.calls] == ["chat", "chat"]
    plain, with_passages = backend.calls[0][1], backend.calls[1][1]
    for ex, p, q, r0, r1 in zip(examples, plain, with_passages, no_ret, rag):
        assert p == ex.request and q.endswith(ex.request)
        assert all(passage.text in q for passage in ex.passages) and ex.passages[0].text not in p
        assert r0["answer"] == r1["answer"] == f"reply to {ex.key}"
        assert [x["id"] for x in r1["passages"]] == ex.passage_ids


def test_modular_agents_parse_and_fall_back(examples):
    q0, q1, q2 = (ex.question for ex in examples)

    class ModularScript(ScriptedBackend):
        def _reply(self, prompt, stage):
            if prompt.startswith("You are the Intent Reconstructor"):
                return "Search(river of Paris)" if q0 in prompt else "no idea"
            if prompt.startswith("You are the Fact Locator"):
                return "[Relevant]: [2] Seine\n The Seine is a river in northern France." if q0 in prompt else "hmm"
            return "Seine" if "Facts:" in prompt else "unsure"

    backend = ModularScript({})
    rows = agents.run("modular", backend, examples, agents.static_retrieval, agents.Limits())
    assert len(backend.calls) == 3 and all(len(p) == 3 for _, p in backend.calls)
    assert rows[0]["queries"] == ["river of Paris"] and rows[0]["fallbacks"] == []
    assert rows[0]["facts"][0]["index"] == 2 and rows[0]["answer"] == "Seine"
    assert rows[1]["fallbacks"] == ["intent", "locator"] and rows[1]["queries"] == [q1] and rows[1]["answer"] == "unsure"
    assert "Facts:" not in backend.calls[2][1][1]  # no facts: the generator gets the request alone


def index_of_ctxs(tmp_path: Path, encoder_dir, examples) -> tuple[Path, Path]:
    """A psgs_w100-format TSV holding exactly the examples' ctxs, and its embeddings shard."""
    from smart.retrieval.retriever import embed_passages

    tsv = tmp_path / "psgs.tsv"
    with open(tsv, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "text", "title"])
        for ex in examples:
            for pid, p in zip(ex.passage_ids, ex.passages):
                w.writerow([pid, p.text, p.title])
    return tsv, embed_passages(str(encoder_dir), str(tsv), str(tmp_path / "emb"), progress=False)


@pytest.mark.slow
def test_static_and_live_retrieval_give_the_same_passages(tmp_path, encoder_dir, examples):
    """An index holding exactly the items' ctxs: live search for each question returns the item's own ctxs."""
    from smart.retrieval.retriever import Retriever

    tsv, shard = index_of_ctxs(tmp_path, encoder_dir, examples)
    live = agents.LiveRetrieval(Retriever.from_paths(str(encoder_dir), str(tsv), str(shard)), k=3)
    backend = ScriptedBackend({ex.question: {**good(ex.question), "intent": f"Search({ex.question})</eor>"}
                               for ex in examples})
    static_rows = agents.run("smart", backend, examples, agents.static_retrieval, agents.Limits())
    live_rows = agents.run("smart", backend, examples, live, agents.Limits())
    for s, l in zip(static_rows, live_rows):
        assert {p["id"] for p in s["passages"]} == {p["id"] for p in l["passages"]}
        assert len(l["passages"]) == 3
