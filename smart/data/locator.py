"""Step 3 of data creation, fact locating: for each retrieved passage, the supporting sentence(s) or "irrelevant".

Two locators fill `ctx["relevant"]` and `ctx["fact"]` for every ctx of an item:
- `locate_with_teacher`: the teacher judges each passage (given the request and the gold answer) and copies the
  supporting sentences. A fact must be a verbatim span of its passage: an inexact copy is snapped to the passage's
  best-matching run of sentences when close enough (difflib), else the passage is marked irrelevant; both counted.
- `locate_by_answer`: offline and answer-guided, the sentence that supports the gold answer, the claim or the
  correct option (see `best_sentence`), with its passage's lead (see `with_lead`).
"""
from __future__ import annotations

import asyncio
import difflib
import re

from smart.data.convert import (FACT_VERIFICATION, MULTIPLE_CHOICE, check_items, content_words, item_request,
                                phrase_match)
from smart.data.intent import fallback_query, latin_share
from smart.data.teacher import RunSummary, run_resumable
from smart.io import read_records
from smart.trajectory import IRRELEVANT, RELEVANT, normalize_space

SNAP_THRESHOLD = 0.8  # difflib ratio above which an inexact fact is replaced by the passage's own sentences
MAX_FACT_SENTENCES = 3

_SENTENCE = re.compile(r"\S.*?(?:[.!?][\"')\]]*(?=\s+[A-Z\"'(\[\u00C0-\u024F]|\s*$)|$)", re.S)


def sentences(text: str) -> list[str]:
    """The sentences of a passage, each a verbatim substring of it (split after . ! ? before a capital)."""
    return [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip()]


def _runs(sents: list[str], text: str, max_len: int = MAX_FACT_SENTENCES):
    """Contiguous runs of 1..max_len sentences, as verbatim spans of `text`."""
    starts = []
    pos = 0
    for s in sents:
        pos = text.index(s, pos)
        starts.append(pos)
        pos += len(s)
    for i in range(len(sents)):
        for j in range(i, min(i + max_len, len(sents))):
            yield text[starts[i]:starts[j] + len(sents[j])]


def snap_fact(fact: str, passage: str, threshold: float = SNAP_THRESHOLD) -> tuple[str | None, str]:
    """(verbatim fact or None, how): `exact` (up to whitespace), `snapped` to the closest sentence run, or `unmatched`."""
    fact, passage = normalize_space(fact), normalize_space(passage)
    for candidate in (fact, fact.strip("\"'")):  # a reply may wrap its copy in quotes
        if candidate and candidate in passage:
            return candidate, "exact"
    if not fact:
        return None, "unmatched"
    best, best_ratio = None, 0.0
    for run in _runs(sentences(passage), passage):
        matcher = difflib.SequenceMatcher(None, fact.lower(), run.lower(), autojunk=False)
        if matcher.real_quick_ratio() < best_ratio or matcher.quick_ratio() < best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best, best_ratio = run, ratio
    return (best, "snapped") if best is not None and best_ratio >= threshold else (None, "unmatched")


# ----------------------------------------------------------------------------------------------- teacher locator
_TASK = ("You check whether a passage helps to answer a request. Reply with [Relevant] when the passage states facts "
         "that support the given answer, then a line `Fact:` followed by the supporting sentences copied word for word "
         "from the passage (whole sentences, at most three). Reply with [Irrelevant] alone otherwise.")

_EXAMPLES = [
    ("When did the Berlin Wall fall?", "9 November 1989",
     "Berlin Wall\nThe Berlin Wall was a guarded concrete barrier that encircled West Berlin from 1961 to 1989. "
     "On 9 November 1989, the East German government announced that its citizens could cross the border. "
     "Crowds began to climb onto the wall that night.",
     "[Relevant]\nFact: On 9 November 1989, the East German government announced that its citizens could cross the border."),
    ("When did the Berlin Wall fall?", "9 November 1989",
     "Brandenburg Gate\nThe Brandenburg Gate is an 18th-century neoclassical monument in Berlin. It was built on the "
     "orders of King Frederick William II of Prussia.",
     "[Irrelevant]"),
]


def locator_messages(item: dict, ctx: dict) -> list[dict]:
    """A chat prompt judging one passage for one request and its answer."""
    shots = "\n\n".join(f"Request: {q}\nAnswer: {a}\nPassage: {p}\nJudgement:\n{j}" for q, a, p, j in _EXAMPLES)
    passage = f"{normalize_space(ctx.get('title') or '')}\n{normalize_space(ctx.get('text') or '')}"
    user = (f"{shots}\n\nRequest: {item_request(item)}\nAnswer: {item.get('output', '')}\n"
            f"Passage: {passage}\nJudgement:")
    return [{"role": "system", "content": _TASK}, {"role": "user", "content": user}]


def parse_judgement(reply: str) -> tuple[bool | None, str]:
    """(relevant, fact) from a locator reply; relevant is None when the reply says neither."""
    rel, irr = reply.find(RELEVANT), reply.find(IRRELEVANT)
    if irr >= 0 and (rel < 0 or irr < rel):
        return False, ""
    if rel < 0:
        return None, ""
    body = reply[rel + len(RELEVANT):]
    m = re.search(r"(?:fact|extracted span|span)\s*:", body, flags=re.I)
    fact = body[m.end():] if m else body
    return True, fact.strip().strip(":").strip()


def judge(ctx: dict, reply_text: str, truncated: bool) -> tuple[dict, list[str]]:
    """The ctx with `relevant`/`fact` from one teacher reply, and the flags it earned."""
    relevant, fact = parse_judgement(reply_text)
    flags = []
    if not reply_text.strip():
        flags.append("locator_empty")
    elif truncated:
        flags.append("locator_truncated")
    elif latin_share(ctx.get("text") or "") >= 0.9 and latin_share(fact or reply_text) < 0.5:
        flags.append("locator_wrong_language")
        relevant = False
    elif relevant is None:
        flags.append("locator_off_format")
    if relevant and not truncated:
        fact, how = snap_fact(fact, ctx.get("text") or "")
        if how != "exact":
            flags.append(f"fact_{how}")
        relevant = fact is not None
    else:
        relevant = False
    return {**ctx, "relevant": bool(relevant), "fact": (fact or "") if relevant else ""}, flags


async def locate_with_teacher(item: dict, teacher) -> dict:
    """The item with every ctx judged by the teacher (passages in parallel)."""
    replies = await asyncio.gather(*(teacher.chat(locator_messages(item, ctx)) for ctx in item["ctxs"]))
    ctxs, flags = [], list(item.get("flags", []))
    for ctx, reply in zip(item["ctxs"], replies):
        judged, f = judge(ctx, reply.text, reply.truncated)
        ctxs.append(judged)
        flags += f
    return {**item, "ctxs": ctxs, "flags": flags}


# ----------------------------------------------------------------------------------------------- offline locator
CLAIM_OVERLAP = 0.5  # share of a claim's content words a sentence must hold to support or refute it


def _norm(s: str) -> str:
    return " " + " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split()) + " "


def _request_words(item: dict) -> set[str]:
    """Content words of the request as a query (the claim alone, the question without its options)."""
    return set(content_words(fallback_query(item)))


def answer_targets(item: dict) -> list[str]:
    """The strings a supporting sentence must hold: the gold short answers (`answers`, else `output`; for multiple
    choice the correct option's text); none for a claim, whose label is no text of the passage."""
    if item.get("task_type") == FACT_VERIFICATION:
        return []
    answers = item["answers"] if isinstance(item.get("answers"), list) else [item.get("output", "")]
    return [t for t in (_norm(a) for a in answers if isinstance(a, str)) if t.strip()]


def best_sentence(item: dict, ctx: dict) -> str | None:
    """The passage's sentence that supports the item's answer best, or None. A sentence qualifies when it holds one
    of the item's `evidence` sentences (or lies inside one), or (answers) holds a gold answer as whole words and
    shares a content word of the request beyond the answer's own (with the passage title counting for the request),
    or (claims) holds at least CLAIM_OVERLAP of the claim's content words. Among those: evidence first, then the
    most request words."""
    request = _request_words(item)
    targets = answer_targets(item)
    evidence = [_norm(e) for e in item.get("evidence") or [] if isinstance(e, str) and e.strip()]
    title = set(content_words(ctx.get("title") or ""))
    best, best_key = None, None
    for sentence in sentences(normalize_space(ctx.get("text") or "")):
        norm, words = _norm(sentence), set(content_words(sentence))
        is_evidence = any(e in norm or (len(norm) > 24 and norm in e) for e in evidence)
        overlap = len(request & words)
        if is_evidence:
            ok = True
        elif targets:
            found = [t for t in targets if t in norm]
            beyond = request - {w for t in found for w in content_words(t)}
            ok = bool(found) and bool(beyond & (words | title))
        else:
            ok = item.get("task_type") == FACT_VERIFICATION and overlap >= CLAIM_OVERLAP * len(request) > 0
        key = (is_evidence, overlap)
        if ok and (best_key is None or key > best_key):
            best, best_key = sentence, key
    return best


def with_lead(text: str, sentence: str) -> str:
    """The span of `text` from its first sentence through `sentence` when that is among its first MAX_FACT_SENTENCES
    sentences (the lead names the subject that later sentences call "he" or "it"), else `sentence` alone."""
    sents = sentences(text)
    if sentence not in sents[1:MAX_FACT_SENTENCES]:
        return sentence
    start = text.index(sents[0])
    return text[start:text.index(sentence, start) + len(sentence)]


def _verbatim_answer(item: dict, fact: str) -> str | None:
    """A gold answer as the fact spells it (its casing, its alias), for open questions; None when none occurs."""
    if item.get("task_type") in (FACT_VERIFICATION, MULTIPLE_CHOICE):
        return None
    for answer in item.get("answers") or []:
        if m := phrase_match(normalize_space(answer), fact):
            return m.group(0)
    return None


def locate_by_answer(item: dict) -> dict:
    """The offline answer-guided teacher: each passage is relevant when `best_sentence` finds its supporting
    sentence, which with its passage's lead (`with_lead`) is the fact. An open question's answer becomes the gold
    answer as the first fact spells it (flag `answer_from_fact` when that changes it); an item with no fact anywhere
    is flagged `no_fact_located`."""
    ctxs, flags = [], list(item.get("flags", []))
    for ctx in item["ctxs"]:
        fact = best_sentence(item, ctx)
        if fact:
            fact = with_lead(normalize_space(ctx.get("text") or ""), fact)
        ctxs.append({**ctx, "relevant": fact is not None, "fact": fact or ""})
    facts = [c["fact"] for c in ctxs if c["relevant"]]
    output = item.get("output", "")
    if not facts:
        flags.append("no_fact_located")
    elif (said := _verbatim_answer(item, facts[0])) and said != output:
        output, flags = said, flags + ["answer_from_fact"]
    return {**item, "ctxs": ctxs, "output": output, "flags": flags}


def run_locate(input_file: str, output_file: str, teacher, concurrency: int = 8) -> RunSummary:
    """Judge every passage of every usable item of `input_file` (items with `ctxs`) into `output_file` (resumable).
    `teacher=None`: the offline answer-guided locator (`locate_by_answer`)."""
    items, rejected = check_items(read_records(input_file), needs=("ctxs",))

    async def process(item: dict) -> dict:
        return locate_by_answer(item) if teacher is None else await locate_with_teacher(item, teacher)

    summary = run_resumable(items, process, output_file, concurrency, teacher, desc="locate")
    summary.rejected = rejected
    return summary
