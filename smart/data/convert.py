"""The unified data-creation item: task types, conversion from common dataset shapes, the checks every step applies.

Unified item: {id, dataset_name, task_type, instruction, input, output} plus, when the source has them, `answers` (the
gold short answers; for multiple choice the correct option's text) and `evidence` (sentences known to support the
answer), which guide the offline answer-guided teacher (smart.data.intent, smart.data.locator). Shapes read:
- qa: question + answers/answer (NQ, PopQA, HotpotQA, ASQA); answers the question itself contains are dropped while
  others remain
- claim: claim (or question) + label/answers (FEVER, PubHealth)
- choices: question (or question_stem, or {stem, choices}) + choices + answerKey (ARC, OpenBookQA)
- dialogue: history/context turns + question + answer, or KILT's input + output (WoW, QReCC)
- instruction: instruction/input/output (Alpaca)
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable

from smart.io import read_records
from smart.trajectory import normalize_space

FACT_VERIFICATION, MULTIPLE_CHOICE, MULTI_HOP_QA = "fact_verification", "multiple_choice", "multi_hop_qa"
OPEN_QA, AMBIGUOUS_QA, DIALOGUE, INSTRUCTION = "open_qa", "ambiguous_qa", "dialogue", "instruction"
TASK_TYPES = (FACT_VERIFICATION, MULTIPLE_CHOICE, MULTI_HOP_QA, OPEN_QA, AMBIGUOUS_QA, DIALOGUE, INSTRUCTION)
OPEN_QUESTIONS = (OPEN_QA, MULTI_HOP_QA, AMBIGUOUS_QA)  # answered in words, not by a label or an option

SHAPES = ("auto", "qa", "claim", "choices", "dialogue", "instruction")
FACT_VERIFICATION_INSTRUCTION = "Is the following statement correct or not? Say true if it's correct; otherwise, say false."
MULTIPLE_CHOICE_INSTRUCTION = "Given four answer candidates, A, B, C and D, choose the best answer choice."
DIALOGUE_INSTRUCTION = ("Continue the conversation below, one turn per line, with a reply that is informative, "
                        "accurate and engaging.")

_TASK_BY_DATASET = {
    "nq": OPEN_QA, "popqa": OPEN_QA, "triviaqa": OPEN_QA, "squad": OPEN_QA, "webq": OPEN_QA,
    "hotpotqa": MULTI_HOP_QA, "hotpot": MULTI_HOP_QA, "2wikimultihopqa": MULTI_HOP_QA, "musique": MULTI_HOP_QA,
    "asqa": AMBIGUOUS_QA, "ambigqa": AMBIGUOUS_QA,
    "fever": FACT_VERIFICATION, "pubhealth": FACT_VERIFICATION,
    "arc": MULTIPLE_CHOICE, "arc_c": MULTIPLE_CHOICE, "arc_e": MULTIPLE_CHOICE, "openbookqa": MULTIPLE_CHOICE,
    "openbook": MULTIPLE_CHOICE, "wow": DIALOGUE, "qrecc": DIALOGUE, "alpaca": INSTRUCTION,
    "stanford_alpaca": INSTRUCTION, "gpt4_alpaca": INSTRUCTION,
}
_TRUE = {"true", "supports", "support", "supported", "yes", "1"}
_FALSE = {"false", "refutes", "refute", "refuted", "no", "0"}


# function words left out of search queries and word-overlap checks (the answer-guided teacher's)
STOPWORDS = frozenset(
    "a an the of in on at by to for from with and or but not no is was are were be been being am do does did has have "
    "had it its this that these those there their they them he she his her him we our you your i me my as into onto "
    "than then so such can could would should will shall may might must what which who whom whose when where why how "
    "about over under after before during while also if whether any all some each other one s what's who's where's "
    "when's how's it's that's there's".split())


def content_words(text: str) -> list[str]:
    """The lowercased words of `text` that are not STOPWORDS, in order (punctuation dropped)."""
    return [w for w in re.findall(r"[\w'’-]+", text.lower()) if w.strip("'’-") and w not in STOPWORDS]


def item_request(item: dict) -> str:
    """The request as one text: instruction, then input (choices, claim, conversation) when present."""
    instruction, input = (item.get("instruction") or "").strip(), (item.get("input") or "").strip()
    return f"{instruction}\n{input}" if instruction and input else instruction or input


class Rejected(ValueError):
    """A source row that cannot become an item; the message is the reason (a short kind)."""


def detect_shape(row: dict) -> str:
    if "instruction" in row and "output" in row:
        return "instruction"
    if "choices" in row or isinstance(row.get("question"), dict):
        return "choices"
    if "claim" in row or "label" in row:
        return "claim"
    if any(k in row for k in ("history", "context", "Context", "dialogue")) or \
            (isinstance(row.get("output"), list) and "input" in row):
        return "dialogue"
    return "qa"


def default_task_type(dataset_name: str, shape: str) -> str:
    by_shape = {"qa": OPEN_QA, "claim": FACT_VERIFICATION, "choices": MULTIPLE_CHOICE, "dialogue": DIALOGUE,
                "instruction": INSTRUCTION}
    return _TASK_BY_DATASET.get(dataset_name.lower(), by_shape[shape])


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _answers(row: dict) -> list[str]:
    value = row.get("answers", row.get("answer", row.get("Answer")))
    if isinstance(value, dict):  # SQuAD-style {"text": [...]}
        value = value.get("text")
    values = value if isinstance(value, list) else [value]
    return [a.strip() for a in values if isinstance(a, str) and a.strip()]


def phrase_match(phrase: str, text: str) -> re.Match | None:
    """The first occurrence of `phrase` (as given) in `text` as whole words, ignoring case; None when absent."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.I)


def _qa(row: dict) -> tuple[str, str, str, list[str]]:
    """A question and its answers, less the answer aliases the question itself contains (TriviaQA lists
    "Capital of Kenya" among the answers of "What is the capital of Kenya?"): echoing the question is no answer.
    When every answer is in the question ("Which is older, A or B?"), all stay."""
    question, answers = _text(row.get("question")), _answers(row)
    if not question:
        raise Rejected("missing_question")
    if not answers:
        raise Rejected("empty_answer")
    answers = [a for a in answers if not phrase_match(a.strip(), question)] or answers
    return question, "", answers[0], answers


def _claim(row: dict) -> tuple[str, str, str, list[str]]:
    claim = _text(row.get("claim")) or _text(row.get("question"))
    label = row.get("label", (_answers(row) or [None])[0])
    label = str(label).strip().lower() if label is not None else ""
    if not claim:
        raise Rejected("missing_claim")
    if label not in _TRUE | _FALSE:
        raise Rejected("unknown_label" if label else "empty_answer")
    gold = "true" if label in _TRUE else "false"
    return FACT_VERIFICATION_INSTRUCTION, claim, gold, [gold]


def choice_answer(label: str, text: str) -> str:
    """A multiple-choice answer: the choice's text, then its label ("iron (B)"), so a model first copies a text
    (from a fact or the choices) and then names its letter, and an answer always names a choice."""
    return f"{text} ({label})"


def _choices(row: dict) -> tuple[str, str, str, list[str]]:
    question, choices = row.get("question"), row.get("choices")
    if isinstance(question, dict):  # original ARC/OpenBookQA: {"stem", "choices": [{"text", "label"}]}
        question, choices = question.get("stem"), question.get("choices")
    question = _text(question) or _text(row.get("question_stem"))
    if isinstance(choices, dict):
        choices = [{"text": t, "label": l} for t, l in zip(choices.get("text", []), choices.get("label", []))]
    if not question:
        raise Rejected("missing_question")
    if not isinstance(choices, list) or not choices:
        raise Rejected("missing_choices")
    letters = {str(i): "ABCDE"[i - 1] for i in range(1, 6)}
    options = [(letters.get(str(c.get("label")), str(c.get("label"))), _text(c.get("text"))) for c in choices]
    key = letters.get(str(row.get("answerKey")), str(row.get("answerKey") or ""))
    gold = [(label, text) for label, text in options if label == key]
    if not gold:
        raise Rejected("empty_answer")
    return (MULTIPLE_CHOICE_INSTRUCTION, question + "".join(f"\n{l}: {t}" for l, t in options),
            choice_answer(*gold[0]), [gold[0][1]])


def _dialogue(row: dict) -> tuple[str, str, str, list[str]]:
    history = next((row[k] for k in ("history", "context", "Context", "dialogue") if k in row), None)
    if history is None and isinstance(row.get("input"), str):  # KILT (WoW): turns joined by newlines
        turns = row["input"].split("\n")
    else:
        turns = list(history) if isinstance(history, list) else ([history] if isinstance(history, str) else [])
        question = _text(row.get("question")) or _text(row.get("Question"))
        turns += [question] if question else []
    turns = [t.strip() for t in turns if isinstance(t, str) and t.strip()]
    output = row.get("output")
    if isinstance(output, list):  # KILT: [{"answer": ...}, ...]
        answers = [o.get("answer", "").strip() for o in output if isinstance(o, dict) and o.get("answer")]
    else:
        answers = _answers(row) or [a for a in [_text(row.get("response"))] if a]
    if not turns:
        raise Rejected("missing_history")
    if not answers:
        raise Rejected("empty_answer")
    return DIALOGUE_INSTRUCTION, "\n".join(turns), answers[0], []


def _instruction(row: dict) -> tuple[str, str, str, list[str]]:
    instruction, input, output = _text(row.get("instruction")), _text(row.get("input")), _text(row.get("output"))
    if not instruction and not input:
        raise Rejected("missing_instruction")
    if not output:
        raise Rejected("empty_answer")
    return instruction, input, output, []


_READERS = {"qa": _qa, "claim": _claim, "choices": _choices, "dialogue": _dialogue, "instruction": _instruction}


def convert_row(row: dict, dataset_name: str, index: int, shape: str = "auto", task_type: str | None = None) -> dict:
    """One source row as a unified item; raises Rejected with a short reason."""
    if shape == "auto":
        shape = detect_shape(row)
        if shape == "qa" and (task_type or _TASK_BY_DATASET.get(dataset_name.lower())) == FACT_VERIFICATION:
            shape = "claim"  # Self-RAG's processed PubHealth: a claim under `question`, the label under `answers`
    instruction, input, output, answers = _READERS[shape](row)
    task = task_type or default_task_type(dataset_name, shape)
    if task not in TASK_TYPES:
        raise Rejected("unknown_task_type")
    raw_id = next((row[k] for k in ("id", "_id", "qid", "question_id") if row.get(k) not in (None, "")), None)
    item = {"id": f"{dataset_name}_{raw_id if raw_id is not None else index}", "dataset_name": dataset_name,
            "task_type": task, "instruction": instruction, "input": input, "output": output}
    if answers:
        item["answers"] = answers
    evidence = row.get("evidence")
    evidence = [evidence] if isinstance(evidence, str) else evidence if isinstance(evidence, list) else []
    if evidence := [normalize_space(e) for e in evidence if isinstance(e, str) and e.strip()]:
        item["evidence"] = evidence
    return item


def convert_file(path: str, dataset_name: str, shape: str = "auto", task_type: str | None = None,
                 ) -> tuple[list[dict], dict[str, list[str]]]:
    """(items, rejected: reason -> source line numbers) for a JSON/JSONL file of one dataset."""
    items, rejected, seen = [], defaultdict(list), set()
    for line, row in read_records(path):
        try:
            item = convert_row(row, dataset_name, line, shape, task_type)
            if item["id"] in seen:
                raise Rejected("duplicate_id")
        except Rejected as e:
            rejected[str(e)].append(f"{path}:{line}")
            continue
        seen.add(item["id"])
        items.append(item)
    return items, dict(rejected)


def check_items(rows: Iterable[tuple[int, dict]], needs: tuple[str, ...] = ()) -> tuple[list[dict], dict[str, list[str]]]:
    """Split loaded rows into usable items and rejected ids by reason: missing id/fields, unknown task type, empty
    answer, duplicate id, and a missing or empty field among `needs` (what a later step adds, e.g. `ctxs`)."""
    items, rejected, seen = [], defaultdict(list), set()
    for line, row in rows:
        key = str(row.get("id") if row.get("id") not in (None, "") else f"line {line}")
        if row.get("id") in (None, ""):
            reason = "missing_id"
        elif key in seen:
            reason = "duplicate_id"
        elif not _text(row.get("instruction")) and not _text(row.get("input")):
            reason = "missing_instruction"
        elif row.get("task_type") not in TASK_TYPES:
            reason = "unknown_task_type"
        elif not _text(row.get("output")):
            reason = "empty_answer"
        else:
            reason = next((f"missing_{f}" for f in needs if row.get(f) is None), None)
        if reason:
            rejected[reason].append(key)
            continue
        seen.add(key)
        items.append({**row, "id": key, "dataset_name": str(row.get("dataset_name") or "unknown")})
    return items, dict(rejected)
