"""The four agents at inference, stage by stage over a whole batch of examples, plus the paper's baselines.

SMART (`run_smart`, one trained model plays every agent, raw-text prompts in the trajectory format):
  1. Intent Reconstructor: `format_prompt(instruction, input) + "<|Reconstructor|>:\\n"`, stop at `</eor>`;
     the system parses the queries (`trajectory.parse_intent`).
  2. Knowledge Retriever (the system): passages for the queries, inserted as `<retrieval>...</retrieval>\\n\\n`,
     ending with the request restated (`\\nRequest: ...`) for a model trained so (`backend.restated_request`).
     Static retrieval (the paper's protocol) gives the item's own top `ndocs` passages whatever the queries are
     (they were retrieved beforehand for the question); live retrieval gives the top `ndocs` of each query,
     merged by rank without duplicates (`Retriever.search_merged`), numbered 1..n in one block.
  3. Fact Locator: the context continues with `<|Locator|>:\\n`, stop at `</eol>`.
  4. Response Generator: a second call continues the same context with `\\n\\n<|Generator|>:\\n`, stop at `</eog>`.
     Two calls (not one) let the system check the locator's output and, when it is broken, answer without facts.
Every stage is one `backend.generate` call for all examples of the batch.

Inference ablation (the paper's Table 3, methods `smart_no_intent`, `smart_no_locator`, `smart_generator_only`): the
same trained model with agents skipped. Without the Intent Reconstructor the request is the one query and the chain
opens with the retrieval block; without the Fact Locator the generator follows the retrieval block; generator only
answers the request alone, without retrieval.

Fallbacks (counted per example in `fallbacks`, never an exception):
  intent    no query parsed               -> the bare question is the one query
  locator   no `</eol>` or no fact line   -> the generator answers from the request alone (`<|Generator|>:\\n`
                                             right after the request, the no-facts form of the format)
  generator no `</eog>` or empty answer   -> the raw generated text (header and citations removed) is the answer

Baselines (same backbone, same passages, chat template of the backend): `no_retrieval` (the request alone),
`vanilla_rag` (the top passages, then the request) and `modular` (each agent a separately prompted chat call of an
instruct model, no fine-tuning: the paper's multi-agent baseline).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from typing import Callable

from smart import trajectory as tj
from smart.evaluation.tasks import Example
from smart.inference.backends import Backend

log = logging.getLogger(__name__)

# The paper's inference ablation (Table 3): the same trained model with agents skipped, see `run_smart`.
INFERENCE_ABLATIONS = {a: f"smart_{a}" for a in tj.ABLATIONS if a != "full"}
METHODS = ("smart", "no_retrieval", "vanilla_rag", "modular", *INFERENCE_ABLATIONS.values())
FALLBACKS = ("intent", "locator", "generator")

# examples, their query lists -> per example the passages [{"id", "title", "text"}], best first
Retrieve = Callable[[list[Example], list[list[str]]], list[list[dict]]]


@dataclass
class Limits:
    """Max new tokens per stage."""

    intent: int = 64
    locator: int = 256
    generator: int = 100


def static_retrieval(examples: list[Example], query_lists: list[list[str]]) -> list[list[dict]]:
    """The item's own passages (its first ndocs ctxs), the same for every method whatever the queries."""
    return [[{"id": i, "title": p.title, "text": p.text} for i, p in zip(ex.passage_ids, ex.passages)] for ex in examples]


class LiveRetrieval:
    """Top `k` passages of each query from a `smart.retrieval.retriever.Retriever`, merged by rank without duplicates."""

    def __init__(self, retriever, k: int):
        self.retriever, self.k = retriever, k

    def __call__(self, examples: list[Example], query_lists: list[list[str]]) -> list[list[dict]]:
        hits = self.retriever.search_merged(query_lists, self.k)
        return [[{"id": str(h["id"]), "title": h["title"], "text": h["text"]} for h in item] for item in hits]


def _passages(hits: list[dict]) -> list[tj.Passage]:
    return [tj.Passage(title=h["title"], text=h["text"]) for h in hits]


def _record(ex: Example, method: str, **fields) -> dict:
    row = {"id": ex.key, "question": ex.question, "method": method, "queries": [], "passages": [], "facts": [],
           "answer": "", "citations": [], "fallbacks": [], "problems": [], "trajectory": ""}
    row.update(fields)
    return row


def _intent_rows(examples: list[Example], outputs: list[str], method: str, chat: bool = False
                 ) -> tuple[list[dict], list[list[str]]]:
    """One record per example with its parsed queries; the bare question when none parse (intent fallback).

    A chat reply ends without the `</eor>` stop string, so with `chat` its absence is no problem.
    """
    rows, query_lists = [], []
    for ex, out in zip(examples, outputs):
        queries, problems = tj.parse_intent(out + (tj.EOR if chat and tj.EOR not in out else ""))
        row = _record(ex, method, intent_output=out, problems=problems)
        if not queries:
            row["fallbacks"].append("intent")
            queries = [ex.question]
        row["queries"] = queries
        rows.append(row)
        query_lists.append(queries)
    return rows, query_lists


def _answer_of(text: str, row: dict) -> None:
    """Parse generator output into row (answer, citations), taking the generator fallback when it is broken."""
    answer, citations, problems = tj.parse_answer(text)
    row["problems"] += problems
    if problems:
        row["fallbacks"].append("generator")
        answer = answer or text.replace(tj.EOG, "").strip()
    row["answer"], row["citations"] = answer, citations


def run_smart(backend: Backend, examples: list[Example], retrieve: Retrieve, limits: Limits,
              agents: tj.Agents = tj.FULL, method: str = "smart") -> list[dict]:
    """The trained model as all four agents (see the module docstring), or with the agents that `agents` skips
    left out of the chain, as `trajectory.render_long` writes the ablated trajectories. A model trained with
    `--chat_prompt` (`backend.chat_prompt`) gets the request in its chat template's user turn, and one trained on
    restated requests (`backend.restated_request`) gets the request restated after the passages, as in training."""
    prompts = [tj.format_prompt(ex.instruction, ex.input) for ex in examples]
    if backend.chat_prompt:
        prompts = [tj.chat_prompt(backend.tokenizer, p) for p in prompts]
    generate = partial(backend.generate, add_special_tokens=not backend.chat_prompt)
    if agents.intent:
        intents = generate([p + tj.RECONSTRUCTOR for p in prompts], limits.intent, stop=[tj.EOR])
        rows, query_lists = _intent_rows(examples, intents, method)
        heads = [p + tj.RECONSTRUCTOR + tj.render_intent(q) + "\n\n" for p, q in zip(prompts, query_lists)]
    else:  # the request itself is the query
        rows = [_record(ex, method, queries=[ex.question]) for ex in examples]
        query_lists, heads = [row["queries"] for row in rows], list(prompts)

    hits = retrieve(examples, query_lists) if agents.retrieval else [[] for _ in examples]
    contexts = []
    for ex, head, row, item in zip(examples, heads, rows, hits):
        row["passages"] = [{"id": h["id"], "title": h["title"]} for h in item]
        request = tj.restated_request(ex.instruction, ex.input) if backend.restated_request else ""
        contexts.append(head + (tj.render_retrieval(_passages(item), request) + "\n\n" if item else ""))
    generator_contexts = [c + tj.GENERATOR for c in contexts]  # no passages or no locator: straight to the answer
    located = [i for i, item in enumerate(hits) if item] if agents.locator else []
    locators = generate([contexts[i] + tj.LOCATOR for i in located], limits.locator, stop=[tj.EOL])
    for i, out in zip(located, locators):
        facts, problems = tj.parse_locator(out, len(hits[i]))
        row = rows[i]
        row["locator_output"], row["problems"] = out, row["problems"] + problems
        if not out.rstrip().endswith(tj.EOL) or not facts:
            row["fallbacks"].append("locator")
            generator_contexts[i] = prompts[i] + tj.GENERATOR
        else:
            row["facts"] = [asdict(f) for f in facts]
            generator_contexts[i] = contexts[i] + tj.LOCATOR + out + "\n\n" + tj.GENERATOR
    answers = generate(generator_contexts, limits.generator, stop=[tj.EOG])
    for row, context, out in zip(rows, generator_contexts, answers):
        _answer_of(out, row)
        row["trajectory"] = context + out
    return rows


# ----------------------------------------------------------------------------------------------- baselines
def run_no_retrieval(backend: Backend, examples: list[Example], retrieve: Retrieve, limits: Limits) -> list[dict]:
    """The backbone answers the request alone (its chat template, the task's zero-shot instruction)."""
    conversations = [[{"role": "user", "content": ex.request}] for ex in examples]
    replies = backend.chat(conversations, limits.generator)
    return [_record(ex, "no_retrieval", answer=r.strip(), trajectory=c[0]["content"] + "\n\n" + r)
            for ex, c, r in zip(examples, conversations, replies)]


def rag_request(passages: list[tj.Passage], request: str) -> str:
    """Vanilla RAG's user turn: the passages, then the request (also the answer-guided teacher's, smart.data.answer)."""
    return f"Passages:\n{tj.render_passages(passages)}\n\n{request}"


def run_vanilla_rag(backend: Backend, examples: list[Example], retrieve: Retrieve, limits: Limits) -> list[dict]:
    """The backbone answers with the top passages prepended to the same request."""
    hits = retrieve(examples, [[ex.question] for ex in examples])
    conversations = [[{"role": "user", "content": rag_request(_passages(h), ex.request)}]
                     for ex, h in zip(examples, hits)]
    replies = backend.chat(conversations, limits.generator)
    return [_record(ex, "vanilla_rag", queries=[ex.question], passages=[{"id": x["id"], "title": x["title"]} for x in h],
                    answer=r.strip(), trajectory=c[0]["content"] + "\n\n" + r)
            for ex, h, c, r in zip(examples, hits, conversations, replies)]


RECONSTRUCTOR_PROMPT = (
    "You are the Intent Reconstructor of a question-answering team. Write one to three short search queries that "
    "would find the knowledge needed for the request below, in the form Search(first query\n second query)\n\n"
    "Request:\n{request}")
LOCATOR_PROMPT = (
    "You are the Fact Locator of a question-answering team. For each numbered passage below, decide whether it "
    "holds facts that help with the request. For a helpful passage write a line `[Relevant]: [number] title` and "
    "on the next line copy the helpful sentence(s) from the passage word for word. For any other passage write "
    "`[Irrelevant]: [number] Lacking Supporting Facts`. Write one entry per passage and nothing else.\n\n"
    "Request:\n{request}\n\nPassages:\n{passages}")
GENERATOR_PROMPT = "Facts:\n{facts}\n\nUsing the facts where they help, answer the request.\n\n{request}"


def run_modular(backend: Backend, examples: list[Example], retrieve: Retrieve, limits: Limits) -> list[dict]:
    """Each agent a separately prompted chat call of an instruct model (no fine-tuning), stage by stage."""
    replies = backend.chat([[{"role": "user", "content": RECONSTRUCTOR_PROMPT.format(request=ex.request)}]
                            for ex in examples], limits.intent)
    rows, query_lists = _intent_rows(examples, replies, "modular", chat=True)

    hits = retrieve(examples, query_lists)
    with_passages = [i for i, h in enumerate(hits) if h]
    for row, item in zip(rows, hits):
        row["passages"] = [{"id": h["id"], "title": h["title"]} for h in item]
    located = backend.chat([[{"role": "user", "content": LOCATOR_PROMPT.format(
        request=examples[i].request, passages=tj.render_passages(_passages(hits[i])))}] for i in with_passages], limits.locator)
    for i, reply in zip(with_passages, located):
        facts, problems = tj.parse_locator(reply.replace(tj.EOL, "") + tj.EOL, len(hits[i]))
        rows[i]["locator_output"], rows[i]["problems"] = reply, rows[i]["problems"] + problems
        if not facts:
            rows[i]["fallbacks"].append("locator")
        rows[i]["facts"] = [asdict(f) for f in facts]

    conversations = []
    for ex, row in zip(examples, rows):
        facts = "\n".join(f"[{f['index']}] {f['title']}: {f['text']}" for f in row["facts"] if f["relevant"])
        content = GENERATOR_PROMPT.format(facts=facts, request=ex.request) if facts else ex.request
        conversations.append([{"role": "user", "content": content}])
    answers = backend.chat(conversations, limits.generator)
    for row, conversation, answer in zip(rows, conversations, answers):
        row["answer"] = answer.strip()
        if not row["answer"]:
            row["problems"].append("generator: empty answer")
            row["fallbacks"].append("generator")
        row["trajectory"] = "\n\n".join(filter(None, [row["intent_output"], row.get("locator_output", ""),
                                                      conversation[0]["content"], answer]))
    return rows


RUNNERS: dict[str, Callable[[Backend, list[Example], Retrieve, Limits], list[dict]]] = {
    "smart": run_smart, "no_retrieval": run_no_retrieval, "vanilla_rag": run_vanilla_rag, "modular": run_modular,
    **{method: partial(run_smart, agents=tj.ABLATIONS[ablation], method=method)
       for ablation, method in INFERENCE_ABLATIONS.items()}}


def run(method: str, backend: Backend, examples: list[Example], retrieve: Retrieve, limits: Limits) -> list[dict]:
    """Predictions of `method` for `examples` (one record per example, same order); logs the fallbacks taken."""
    rows = RUNNERS[method](backend, examples, retrieve, limits) if examples else []
    taken = Counter(f for row in rows for f in row["fallbacks"])
    if taken:
        log.warning("%s: fallbacks on %d examples: %s", method, len(examples), dict(taken))
    return rows
