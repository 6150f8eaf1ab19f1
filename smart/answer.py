"""Data creation, the answer step of the answer-guided teacher (optional, between fact locating and combine).

An open question's answer is written by a chat model (the demo: the backbone itself) as vanilla RAG would answer it
(the model's chat template; the item's retrieved passages, then the request; greedy). Its first sentence is kept when
it holds a gold answer (flag `answer_by_model`). Otherwise the model is asked again, told the gold answer (as the
paper's teacher is), for one sentence that answers the question with it; that sentence is kept when it holds the gold
answer (`answer_by_model_told`); else the gold answer itself stays (`answer_gold`). So the generator learns answers
in the model's own words. Claims and multiple-choice items keep their label and option answers, and pass through.
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
TOLD = "The answer is {answer}. Answer the question in one sentence that contains this answer."


def answer_messages(item: dict, told: str | None = None) -> list[dict]:
    """The vanilla-RAG chat prompt of an item (its passages, then its request), with TOLD after it when `told`."""
    passages = [Passage.from_ctx(ctx) for ctx in item["ctxs"]]
    content = rag_request(passages, item_request(item))
    return [{"role": "user", "content": content + ("\n\n" + TOLD.format(answer=told) if told else "")}]


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
    flag, span = "answer_by_model", answer_span((await teacher.chat(answer_messages(item))).text, golds)
    if span is None:
        flag, span = "answer_by_model_told", answer_span((await teacher.chat(answer_messages(item, item["output"]))).text,
                                                         [item["output"]])
    if span is None:
        flag, span = "answer_gold", item["output"]
    return {**item, "output": span, "flags": item.get("flags", []) + [flag]}


def run_answers(input_file: str, output_file: str, teacher, concurrency: int = 8) -> RunSummary:
    """Write the answers of every usable located item of `input_file` into `output_file` (resumable JSONL)."""
    items, rejected = check_items(read_records(input_file), needs=("ctxs",))

    async def process(item: dict) -> dict:
        return await write_answer(item, teacher)

    summary = run_resumable(items, process, output_file, concurrency, teacher, desc="answers")
    summary.rejected = rejected
    return summary
