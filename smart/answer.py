"""Data creation, the answer step of the answer-guided teacher (optional, between fact locating and combine).

An open question's answer is written by a chat model (the demo: the backbone itself) as vanilla RAG would answer it
(the model's chat template; the item's retrieved passages, then the request; greedy). Its first sentence is kept when
it holds a gold answer (flag `answer_by_model`); otherwise the gold answer stays (`answer_gold`). So the generator
learns answers in the model's own words where those are right, and the gold answer where they are not. Claims and
multiple-choice items keep their label and option answers, and pass through unchanged.
"""
from __future__ import annotations

from smart.agents import rag_request
from smart.convert import AMBIGUOUS_QA, MULTI_HOP_QA, OPEN_QA, check_items, item_request
from smart.io import read_records
from smart.locator import sentences
from smart.metrics import match
from smart.teacher import RunSummary, run_resumable
from smart.trajectory import Passage, normalize_space

ANSWERED_TASKS = (OPEN_QA, MULTI_HOP_QA, AMBIGUOUS_QA)
def answer_messages(item: dict) -> list[dict]:
    """The vanilla-RAG chat prompt of an item: its passages, then its request."""
    passages = [Passage.from_ctx(ctx) for ctx in item["ctxs"]]
    return [{"role": "user", "content": rag_request(passages, item_request(item))}]


def answer_span(reply: str, golds: list[str]) -> str | None:
    """The first sentence of the reply's first non-empty line when it holds a gold answer (`metrics.match`)."""
    line = next((normalize_space(x) for x in reply.split("\n") if x.strip()), "")
    first = next(iter(sentences(line)), "")
    return first if match(first, golds) else None


async def write_answer(item: dict, teacher) -> dict:
    """The item with the model's answer where it holds a gold answer (see the module docstring)."""
    if item.get("task_type") not in ANSWERED_TASKS:
        return item
    golds = [a for a in item.get("answers") or [item["output"]] if isinstance(a, str)]
    span = answer_span((await teacher.chat(answer_messages(item))).text, golds)
    flag = "answer_by_model" if span else "answer_gold"
    return {**item, "output": span or item["output"], "flags": item.get("flags", []) + [flag]}


def run_answers(input_file: str, output_file: str, teacher, concurrency: int = 8) -> RunSummary:
    """Write the answers of every usable located item of `input_file` into `output_file` (resumable JSONL)."""
    items, rejected = check_items(read_records(input_file), needs=("ctxs",))

    async def process(item: dict) -> dict:
        return await write_answer(item, teacher)

    summary = run_resumable(items, process, output_file, concurrency, teacher, desc="answers")
    summary.rejected = rejected
    return summary
