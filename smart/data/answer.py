"""Data creation, the answer step of the answer-guided teacher (optional, between fact locating and combine).

An open question's answer is written by a chat model (the demo: the backbone itself; its chat template, greedy). First
it answers as vanilla RAG would (the item's retrieved passages, then the request); the complete sentences of the first
paragraph of its reply, up to MAX_ANSWER_WORDS words, are kept when they hold a gold answer (flag `answer_by_model`);
where they do not fit or miss it, its first sentence cut at the first clause break after the gold answer
(`clause_span`). Otherwise it reads what the Response Generator reads, the located facts (each relevant passage's
title and fact), then the request, kept on the same terms (`answer_by_facts`). Otherwise the first located fact whose
first sentence holds a gold answer gives the answer, verbatim and clause-cut (`answer_by_fact_span`); otherwise the
gold answer stays (`answer_gold`). So the generator learns the backbone's own right answers in its own words and at
their own length, and sentences copied from the facts where the backbone is wrong. Claims and multiple-choice items
keep their label and option answers, and pass through unchanged.

Items go to the model in fixed chunks, each prompt kind one `chat_all` call per chunk (`teacher.run_batched`): a local
model answers the same batches every run, so the step is deterministic.
"""
from __future__ import annotations

import re

from smart.data.convert import OPEN_QUESTIONS, check_items, item_request, phrase_match
from smart.data.locator import sentences
from smart.data.teacher import RunSummary, run_batched
from smart.evaluation.metrics import match
from smart.inference.agents import rag_request
from smart.io import read_records
from smart.trajectory import Passage, normalize_space


def facts_messages(item: dict) -> list[dict] | None:
    """The chat prompt of an item's located facts (title and fact of each relevant passage), then its request;
    None when no fact was located."""
    facts = [Passage(title=ctx.get("title") or "", text=ctx["fact"]) for ctx in item["ctxs"] if ctx.get("relevant")]
    return [{"role": "user", "content": rag_request(facts, item_request(item))}] if facts else None


def answer_messages(item: dict) -> list[dict]:
    """The vanilla-RAG chat prompt of an item: its passages, then its request."""
    passages = [Passage.from_ctx(ctx) for ctx in item["ctxs"]]
    return [{"role": "user", "content": rag_request(passages, item_request(item))}]


CLAUSE_END = re.compile(r"\s*(?:[,;:(]|\s[–—-]\s)")
MAX_ANSWER_WORDS = 30  # with its citations, an answer stays within the generator's 64 new tokens
SENTENCE_END = (".", "!", "?")


def first_paragraph(reply: str) -> str:
    """The reply's first non-empty line, whitespace normalized."""
    return next((normalize_space(x) for x in reply.split("\n") if x.strip()), "")


def clause_span(text: str, golds: list[str]) -> str | None:
    """The first sentence of the text's first paragraph when it holds a gold answer (`metrics.match`), cut at the
    first clause break (comma, semicolon, colon, parenthesis, dash) after the gold answer's first occurrence; None
    when it holds none."""
    first = next(iter(sentences(first_paragraph(text))), "")
    if not match(first, golds):
        return None
    found = [m for g in golds if g.strip() and (m := phrase_match(g.strip(), first))]
    if found and (cut := CLAUSE_END.search(first, min(m.end() for m in found))):
        return first[:cut.start()].rstrip(" .") + "."
    return first


def answer_span(reply: str, golds: list[str]) -> str | None:
    """The model's answer as it wrote it: the complete sentences of the reply's first paragraph, as many as fit in
    MAX_ANSWER_WORDS words (a last sentence that the token limit cut off is dropped), when they hold a gold answer;
    otherwise `clause_span` of the reply (a first sentence too long to fit, or a gold answer past the words kept)."""
    sents = sentences(first_paragraph(reply))
    if len(sents) > 1 and not sents[-1].rstrip("\"')").endswith(SENTENCE_END):
        sents = sents[:-1]
    kept: list[str] = []
    for sent in sents:
        if len(" ".join(kept + [sent]).split()) > MAX_ANSWER_WORDS:
            break
        kept.append(sent)
    text = " ".join(kept)
    return text if text and match(text, golds) else clause_span(reply, golds)


def _golds(item: dict) -> list[str]:
    return [a for a in item.get("answers") or [item["output"]] if isinstance(a, str)]


def fact_span(item: dict) -> str | None:
    """The first located fact whose first sentence holds a gold answer, cut by `clause_span` (a fact with its
    passage's lead, `locator.with_lead`, holds the answer in a later sentence); None when none does."""
    facts = (ctx["fact"] for ctx in item["ctxs"] if ctx.get("relevant") and ctx.get("fact"))
    return next((span for fact in facts if (span := clause_span(fact, _golds(item)))), None)


ANSWER_PROMPTS = (("answer_by_model", answer_messages), ("answer_by_facts", facts_messages))


async def write_answers(items: list[dict], teacher) -> list[dict]:
    """The items, each open question with its answer and flag (see the module docstring); one `chat_all` call per
    prompt kind."""
    answered: dict[int, tuple[str, str]] = {}
    open_items = [i for i, item in enumerate(items) if item.get("task_type") in OPEN_QUESTIONS]
    for flag, prompt in ANSWER_PROMPTS:
        asked = [(i, m) for i in open_items if i not in answered and (m := prompt(items[i]))]
        replies = await teacher.chat_all([m for _, m in asked])
        for (i, _), reply in zip(asked, replies):
            if span := answer_span(reply.text, _golds(items[i])):
                answered[i] = (span, flag)
    rows = []
    for i, item in enumerate(items):
        if i not in open_items:
            rows.append(item)
            continue
        span, flag = answered.get(i) or ((s, "answer_by_fact_span") if (s := fact_span(item)) else (None, "answer_gold"))
        rows.append({**item, **({"output": span} if span else {}), "flags": item.get("flags", []) + [flag]})
    return rows


def run_answers(input_file: str, output_file: str, teacher, batch_size: int = 64) -> RunSummary:
    """Write the answers of every usable located item of `input_file` into `output_file` (resumable JSONL, chunks of
    `batch_size` items)."""
    items, rejected = check_items(read_records(input_file), needs=("ctxs",))

    async def process(chunk: list[dict]) -> list[dict]:
        return await write_answers(chunk, teacher)

    summary = run_batched(items, process, output_file, batch_size, teacher, desc="answers")
    summary.rejected = rejected
    return summary
