"""The paper's evaluation datasets: file shapes (Self-RAG / ALCE releases), zero-shot instructions, validation and
the paper's file names (PAPER_EVAL_FILES). Their scores under both protocols: smart.evaluation.metrics (score, aggregate).

| task      | request (instruction / input)                         | gold                          | metric   |
|-----------|-------------------------------------------------------|-------------------------------|----------|
| qa        | question / -            (any question/answers/ctxs)   | answers                       | match    |
| popqa     | question / -                                          | answers                       | match    |
| squad     | question / -                                          | answers                       | match    |
| pubhealth | "Is the following statement correct..." / claim       | answers ["true"]/["false"]    | accuracy |
| arc_c     | "Given four answer candidates..." / question + A: ... | answerKey (1-4 mapped to A-D) | accuracy |
| asqa      | ASQA instruction / question                           | qa_pairs short answers, answer| str-em   |

Answers may also come as `possible_answers` (a list, or PopQA's string of one), `answer` or `output`, the first
present in that order. Passages come from `ctxs` (`docs` in ASQA files), best first; the first `ndocs` are used.
Every problem in a file is an InputError naming file, line (item index for .json) and field, raised before any model
is loaded.
"""
from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field

from smart.io import InputError, read_records, require, where
from smart.trajectory import Passage


@dataclass(frozen=True)
class Task:
    name: str
    metric: str  # match | accuracy | asqa
    instruction: str = ""  # zero-shot task instruction; "" = the question alone
    passages_field: str = "ctxs"
    max_new_tokens: int = 100
    title: str = ""


ARC_INSTRUCTION = "Given four answer candidates, A, B, C and D, choose the best answer choice."
PUBHEALTH_INSTRUCTION = "Is the following statement correct or not? Say true if it's correct; otherwise, say false."
ASQA_INSTRUCTION = ("Answer the following question. The question may be ambiguous and have multiple correct answers, "
                    "and in that case, you have to provide a long-form answer including all correct answers.")

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("qa", "match", title="QA (question/answers/ctxs)"),
    Task("popqa", "match", title="PopQA"),
    Task("squad", "match", title="SQuAD"),
    Task("pubhealth", "accuracy", PUBHEALTH_INSTRUCTION, title="PubHealth"),
    Task("arc_c", "accuracy", ARC_INSTRUCTION, max_new_tokens=50, title="ARC-C"),
    Task("asqa", "asqa", ASQA_INSTRUCTION, passages_field="docs", max_new_tokens=300, title="ASQA"),
)}

PAPER_EVAL_FILES = {"pubhealth": "health_claims_processed.jsonl", "arc_c": "arc_challenge_processed.jsonl",
                    "popqa": "popqa_longtail_w_gs.jsonl", "squad": "squad_dev.jsonl", "asqa": "asqa_eval_gtr_top100.json"}

TRUE_FALSE = {"true": "true", "false": "false", "supports": "true", "refutes": "false", "supported": "true",
              "refuted": "false", "yes": "true", "no": "false"}


@dataclass
class Example:
    """One evaluation item, normalized across file shapes."""

    key: str  # the item's id, else its line number
    line: int
    question: str  # the bare question or claim (the fallback search query)
    instruction: str  # the request as the model sees it (with `input`, via trajectory.format_prompt)
    input: str
    golds: list[str]  # answers; for accuracy tasks the one gold label (A-E or true/false)
    passages: list[Passage] = field(default_factory=list)  # the first ndocs of ctxs/docs
    passage_ids: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)  # ARC: label -> text
    answer_key: str = ""  # ARC: the answerKey as the file writes it (the paper protocol's gold)
    qa_pairs: list[list[str]] = field(default_factory=list)  # ASQA: short answers per disambiguation
    long_answer: str = ""  # ASQA: `answer`
    annotations: list[str] = field(default_factory=list)  # ASQA: the first two annotations' long answers

    @property
    def request(self) -> str:
        """Instruction and input as one text (for prompted baselines and chat agents)."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown task '{name}' (choose from {', '.join(TASKS)})")
    return TASKS[name]


def arc_label(label: str) -> str:
    """ARC labels 1-4 (some items) map to A-D; letters are upper-cased."""
    label = str(label).strip()
    return chr(ord("A") + int(label) - 1) if label.isdigit() and 1 <= int(label) <= 26 else label.upper()


def format_choices(choices: dict[str, str]) -> str:
    return "\n".join(f"{label}: {text}" for label, text in choices.items())


def _strings(value, path, line, name) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where(path, line, name)}: expected a non-empty list of strings")
    return value


ANSWER_FIELDS = ("answers", "possible_answers", "answer", "output")


def _answers(obj: dict, path, line) -> list[str]:
    """The gold answers: the first of ANSWER_FIELDS present (`possible_answers` may be a string holding a list)."""
    name = next((f for f in ANSWER_FIELDS if obj.get(f) is not None), None)
    if name is None:
        raise InputError(f"{where(path, line, 'answers')}: missing required field (or {', '.join(ANSWER_FIELDS[1:])})")
    value = obj[name]
    if name == "possible_answers" and isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise InputError(f"{where(path, line, name)}: expected a list (or a string holding one)") from None
    return _strings(value, path, line, name)


def _annotations(obj: dict, path, line) -> list[str]:
    """ASQA: the long answers of the first two `annotations` (ALCE's ROUGE references); none without the field."""
    annotations = obj.get("annotations") or []
    if not isinstance(annotations, list):
        raise InputError(f"{where(path, line, 'annotations')}: expected a list of objects with long_answer")
    out = []
    for j, annotation in enumerate(annotations[:2]):
        text = annotation.get("long_answer") if isinstance(annotation, dict) else None
        if not isinstance(text, str):
            raise InputError(f"{where(path, line, f'annotations[{j}].long_answer')}: expected a string")
        out.append(text)
    return out


def _passages(obj: dict, task: Task, path, line, ndocs: int) -> tuple[list[Passage], list[str]]:
    name = task.passages_field if task.passages_field in obj else ("ctxs" if "ctxs" in obj else task.passages_field)
    ctxs = require(obj, name, path, line, list)
    if len(ctxs) < ndocs:
        raise InputError(f"{where(path, line, name)}: {len(ctxs)} passages, fewer than --ndocs {ndocs}")
    passages, ids = [], []
    for j, ctx in enumerate(ctxs[:ndocs]):
        sub = f"{name}[{j}]"
        if not isinstance(ctx, dict):
            raise InputError(f"{where(path, line, sub)}: expected an object with title and text")
        text = ctx.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where(path, line, sub + '.text')}: missing or empty passage text")
        passages.append(Passage(title=str(ctx.get("title") or ""), text=text.strip()))
        ids.append(str(ctx.get("id", f"{line}-{j}")))
    return passages, ids


def _example(task: Task, obj: dict, path, line: int, ndocs: int) -> Example:
    question = require(obj, "question", path, line, str).strip()
    if not question:
        raise InputError(f"{where(path, line, 'question')}: empty")
    key = str(obj.get("id", obj.get("sample_id", line)))
    ex = Example(key=key, line=line, question=question, instruction=question, input="", golds=[])
    if task.name == "arc_c":
        choices = require(obj, "choices", path, line, dict)
        texts = _strings(require(choices, "text", path, line), path, line, "choices.text")
        labels = _strings(require(choices, "label", path, line), path, line, "choices.label")
        if len(texts) != len(labels):
            raise InputError(f"{where(path, line, 'choices')}: {len(texts)} texts but {len(labels)} labels")
        ex.choices = {arc_label(label): text for label, text in zip(labels, texts)}
        ex.answer_key = str(require(obj, "answerKey", path, line, (str, int)))
        gold = arc_label(ex.answer_key)
        if gold not in ex.choices:
            raise InputError(f"{where(path, line, 'answerKey')}: '{gold}' is not one of the choices {list(ex.choices)}")
        ex.golds = [gold]
        ex.instruction, ex.input = task.instruction, question + "\n" + format_choices(ex.choices)
    elif task.name == "pubhealth":
        gold = _answers(obj, path, line)[0].strip().lower()
        if gold not in TRUE_FALSE:
            raise InputError(f"{where(path, line, 'answers')}: '{gold}' is not true/false (or supports/refutes)")
        ex.golds = [TRUE_FALSE[gold]]
        ex.instruction, ex.input = task.instruction, question
    elif task.name == "asqa":
        pairs = require(obj, "qa_pairs", path, line, list)
        for j, pair in enumerate(pairs):
            if not isinstance(pair, dict):
                raise InputError(f"{where(path, line, f'qa_pairs[{j}]')}: expected an object with short_answers")
            ex.qa_pairs.append(_strings(require(pair, "short_answers", path, line), path, line, f"qa_pairs[{j}].short_answers"))
        if not ex.qa_pairs:
            raise InputError(f"{where(path, line, 'qa_pairs')}: empty")
        ex.long_answer = str(obj.get("answer") or "")
        ex.annotations = _annotations(obj, path, line)
        ex.golds = [a for pair in ex.qa_pairs for a in pair]
        ex.instruction, ex.input = task.instruction, question
    else:
        ex.golds = _answers(obj, path, line)
    return ex


def load_examples(task: Task | str, path: str | os.PathLike, ndocs: int = 3, need_passages: bool = True,
                  limit: int | None = None) -> list[Example]:
    """Read and validate an evaluation file (.jsonl, .json list, or {"data": [...]}).

    With `need_passages`, every item must carry at least `ndocs` passages (an error otherwise: the protocol
    gives every method the same top passages, so a short item would silently change the comparison).
    Duplicate ids are an error (they would collide on resume).
    """
    task = get_task(task) if isinstance(task, str) else task
    records = read_records(path)
    if limit is not None:
        records = records[:limit]
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for line, obj in records:
        ex = _example(task, obj, path, line, ndocs)
        if need_passages:
            ex.passages, ex.passage_ids = _passages(obj, task, path, line, ndocs)
        if ex.key in seen:
            raise InputError(f"{where(path, line, 'id')}: duplicate id '{ex.key}' (first at line {seen[ex.key]})")
        seen[ex.key] = line
        examples.append(ex)
    return examples
