"""Step 1 of data creation, intent reconstruction: the teacher turns a request into a few search queries.

Few-shot prompts per task type (our own wording and examples). A reply that cannot be used (empty, cut at the token
limit, off-format, another language) falls back to the request itself as the one query, and the row is flagged.
"""
from __future__ import annotations

import re

from smart.data.convert import (AMBIGUOUS_QA, DIALOGUE, FACT_VERIFICATION, INSTRUCTION, MULTI_HOP_QA, MULTIPLE_CHOICE,
                           OPEN_QA, STOPWORDS, check_items, item_request)
from smart.data.teacher import RunSummary, run_resumable
from smart.io import read_records
from smart.trajectory import normalize_space

MAX_QUERY_WORDS = 32

_GUIDE = {
    FACT_VERIFICATION: "The request is a claim to check. Write the queries whose results would confirm or refute it.",
    MULTIPLE_CHOICE: "The request is a multiple-choice question. Write queries about the knowledge the question needs; "
                     "do not favour any of the options.",
    MULTI_HOP_QA: "The request needs several lookups in a row. Write one query per lookup, in order; refer to an "
                  "earlier lookup's unknown answer by describing it.",
    OPEN_QA: "The request is a factual question. Write the query that would find the passage holding the answer.",
    AMBIGUOUS_QA: "The request may have several readings. Write one query per plausible reading.",
    DIALOGUE: "The request is a conversation, one turn per line; the last line is the turn to answer. Write queries "
              "that stand alone: resolve pronouns and missing context from the earlier turns.",
    INSTRUCTION: "The request is a general instruction. Write queries for the background knowledge that would help "
                 "to carry it out.",
}

_EXAMPLES = {
    FACT_VERIFICATION: [
        ("The Great Barrier Reef lies off the coast of Queensland.", ["Great Barrier Reef location"]),
        ("Drinking coffee raises the risk of heart disease.", ["coffee consumption and heart disease risk"]),
    ],
    MULTIPLE_CHOICE: [
        ("Which part of a plant takes in most of the water?\nA: leaves\nB: roots\nC: flowers\nD: seeds",
         ["how plants absorb water"]),
        ("A metal spoon left in hot soup becomes hot because of\nA: radiation\nB: convection\nC: conduction\nD: evaporation",
         ["how heat moves through a metal spoon"]),
    ],
    MULTI_HOP_QA: [
        ("In which country was the director of the film Parasite born?", ["director of the film Parasite", "birthplace of Bong Joon-ho"]),
        ("Which river is longer, the Danube or the Rhine?", ["length of the Danube", "length of the Rhine"]),
    ],
    OPEN_QA: [
        ("who painted the ceiling of the sistine chapel", ["painter of the Sistine Chapel ceiling"]),
        ("What is the boiling point of ethanol?", ["ethanol boiling point"]),
    ],
    AMBIGUOUS_QA: [
        ("Who won the world cup in 2014?", ["2014 FIFA World Cup winner", "2014 Cricket World Cup winner"]),
        ("When was the Mercury launched?", ["Mercury spacecraft program launch date", "Mercury planet exploration missions"]),
    ],
    DIALOGUE: [
        ("I just got back from Lisbon.\nNice! Did you try the custard tarts?\nYes, where do they come from?",
         ["origin of the Portuguese custard tart pastel de nata"]),
        ("What do you know about the Beatles?\nThey were a rock band from Liverpool formed in 1960.\nWho was their drummer?",
         ["drummer of the Beatles"]),
    ],
    INSTRUCTION: [
        ("Give me three tips for growing tomatoes on a balcony.", ["growing tomatoes in containers"]),
        ("Explain to a child why the sky is blue.", ["why the sky is blue Rayleigh scattering"]),
    ],
}


def fallback_query(item: dict) -> str:
    """The request itself as a query: the claim, the question without its choices, the last turn, or the text."""
    input = (item.get("input") or "").strip()
    task = item.get("task_type")
    if task == FACT_VERIFICATION and input:
        text = input
    elif task == MULTIPLE_CHOICE and input:
        text = input.split("\n")[0]
    elif task == DIALOGUE and input:
        text = input.split("\n")[-1]
    else:
        text = item_request(item)
    return " ".join(normalize_space(text).split()[:MAX_QUERY_WORDS * 2])


def keyword_query(item: dict) -> str:
    """The answer-guided teacher's query: the request's own words (as `fallback_query` takes them) without its
    function words ("where do the great lakes meet the ocean" -> "great lakes meet ocean"); the request itself when
    nothing else is left."""
    text = fallback_query(item)
    words = [w for w in text.rstrip("?.!").split() if w.lower().strip("\"'?,.:;!()") not in STOPWORDS]
    return " ".join(words) if words else text


def intent_messages(item: dict, max_queries: int) -> list[dict]:
    """A chat prompt asking for at most `max_queries` search queries, one per line, with two worked examples."""
    task = item.get("task_type", OPEN_QA)
    shots = "\n\n".join(f"Request:\n{request}\nQueries:\n" + "\n".join(queries) for request, queries in _EXAMPLES[task])
    system = ("You write search queries for a Wikipedia search engine. " + _GUIDE[task] +
              f" Reply with the queries only, one per line, at most {max_queries}, in the language of the request.")
    user = f"{shots}\n\nRequest:\n{_request_for_prompt(item)}\nQueries:"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _request_for_prompt(item: dict) -> str:
    task = item.get("task_type")
    if task in (FACT_VERIFICATION, MULTIPLE_CHOICE, DIALOGUE) and (item.get("input") or "").strip():
        return item["input"].strip()  # the task instruction is the same for every item: the input is the request
    return item_request(item)


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|queries?\s*:|search intent\s*:|search\s*\()\s*", re.I)


def latin_share(text: str) -> float:
    """Share of the letters of `text` that are ASCII: a cheap check that a reply is in a Latin-script language."""
    letters = [c for c in text if c.isalpha()]
    return sum(c.isascii() for c in letters) / len(letters) if letters else 1.0


def parse_queries(reply: str, request: str) -> tuple[list[str], str | None]:
    """Queries from a teacher reply (one per line or `;`-separated, bullets and labels dropped, duplicates removed)
    and the reason the reply is unusable (None when usable)."""
    lines = []
    for line in reply.replace(";", "\n").split("\n"):
        line = _BULLET.sub("", line).strip().strip('"')
        if line.endswith(")") and line.count(")") > line.count("("):
            line = line[:-1].strip()
        if line and line.lower() not in {q.lower() for q in lines}:
            lines.append(line)
    if not lines:
        return [], "intent_empty"
    if any(len(q.split()) > MAX_QUERY_WORDS for q in lines):
        return [], "intent_off_format"
    if latin_share(request) >= 0.9 and latin_share(" ".join(lines)) < 0.5:
        return [], "intent_wrong_language"
    return lines, None


async def reconstruct(item: dict, teacher, max_queries: int = 3) -> dict:
    """The item with `queries` (and `flags` noting a fallback or a cap). `teacher=None`: the offline answer-guided
    teacher, which keeps queries the item already carries (e.g. the template builder's) and otherwise writes
    `keyword_query`."""
    flags = []
    if teacher is None:
        queries = [normalize_space(q) for q in item.get("queries") or [] if normalize_space(q)] or [keyword_query(item)]
    else:
        reply = await teacher.chat(intent_messages(item, max_queries))
        queries, problem = parse_queries(reply.text, item_request(item))
        if reply.truncated:
            problem = "intent_truncated"
        if problem:
            queries, flags = [fallback_query(item)], [problem, "intent_fallback"]
    if len(queries) > max_queries:
        queries, flags = queries[:max_queries], flags + ["intent_capped"]
    return {**item, "queries": queries, "flags": item.get("flags", []) + flags}


def run_intent(input_file: str, output_file: str, teacher, max_queries: int = 3, concurrency: int = 8) -> RunSummary:
    """Reconstruct the intent of every usable item of `input_file` into `output_file` (resumable JSONL)."""
    items, rejected = check_items(read_records(input_file))

    async def process(item: dict) -> dict:
        return await reconstruct(item, teacher, max_queries)

    summary = run_resumable(items, process, output_file, concurrency, teacher, desc="intent")
    summary.rejected = rejected
    return summary
