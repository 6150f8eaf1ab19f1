"""Data creation, the answer step of the answer-guided teacher (optional, between fact locating and combine).

An open question's answer is written by a chat model (the demo: the backbone itself; its chat template, greedy),
reading first what the Response Generator reads, the located facts (each relevant passage's title and fact), then the
request. Its first sentence is kept when it holds a gold answer (flag `answer_by_facts`). Otherwise the model answers
as vanilla RAG would (the item's retrieved passages, then the request), kept on the same condition
(`answer_by_model`); otherwise the gold answer stays (`answer_gold`). So the generator learns answers in the model's
own words where those are right, and the gold answer where they are not. Claims and multiple-choice items keep their
label and option answers, and pass through unchanged.
"""
from __future__ import annotations

import re

from smart.data.convert import AMBIGUOUS_QA, MULTI_HOP_QA, OPEN_QA, check_items, item_request
from smart.data.locator import sentences
from smart.data.teacher import RunSummary, run_resumable
from smart.evaluation.metrics import match
from smart.inference.agents import rag_request
from smart.io import read_records
from smart.trajectory import Passage, normalize_space

ANSWERED_TASKS = (OPEN_QA, MULTI_HOP_QA, AMBIGUOUS_QA)


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


def answer_span(reply: str, golds: list[str]) -> str | None:
    """The first sentence of the reply's first non-empty line when it holds a gold answer (`metrics.match`), cut at
    the first clause break (comma, semicolon, colon, parenthesis, dash) after the gold answer's first occurrence:
    what follows the answer is not needed and is where a small model's additions go wrong."""
    line = next((normalize_space(x) for x in reply.split("\n") if x.strip()), "")
    first = next(iter(sentences(line)), "")
    if not match(first, golds):
        return None
    found = [m for g in golds if g.strip() and (m := re.search(rf"(?<!\w){re.escape(g.strip())}(?!\w)", first, re.I))]
    if found and (cut := CLAUSE_END.search(first, min(m.end() for m in found))):
        return first[:cut.start()].rstrip(" .") + "."
    return first


async def write_answer(item: dict, teacher) -> dict:
    """The item with the model's answer where it holds a gold answer (see the module docstring)."""
    if item.get("task_type") not in ANSWERED_TASKS:
        return item
    golds = [a for a in item.get("answers") or [item["output"]] if isinstance(a, str)]
    for flag, messages in (("answer_by_facts", facts_messages(item)), ("answer_by_model", answer_messages(item))):
        if messages and (span := answer_span((await teacher.chat(messages)).text, golds)):
            return {**item, "output": span, "flags": item.get("flags", []) + [flag]}
    return {**item, "flags": item.get("flags", []) + ["answer_gold"]}


def run_answers(input_file: str, output_file: str, teacher, concurrency: int = 8) -> RunSummary:
    """Write the answers of every usable located item of `input_file` into `output_file` (resumable JSONL)."""
    items, rejected = check_items(read_records(input_file), needs=("ctxs",))

    async def process(item: dict) -> dict:
        return await write_answer(item, teacher)

    summary = run_resumable(items, process, output_file, concurrency, teacher, desc="answers")
    summary.rejected = rejected
    return summary
