"""The paper's evaluation datasets: file shapes (Self-RAG / ALCE releases), zero-shot instructions, validation.

| task      | request (instruction / input)                         | gold                          | metric   |
|-----------|-------------------------------------------------------|-------------------------------|----------|
| qa        | question / -            (any question/answers/ctxs)   | answers                       | match    |
| popqa     | question / -                                          | answers                       | match    |
| squad     | question / -                                          | answers                       | match    |
| pubhealth | "Is the following statement correct..." / claim       | answers ["true"]/["false"]    | accuracy |
| arc_c     | "Given four answer candidates..." / question + A: ... | answerKey (1-4 mapped to A-D) | accuracy |
| asqa      | ASQA instruction / question                           | qa_pairs short answers, answer| str-em   |

Passages come from `ctxs` (`docs` in ASQA files), best first; the first `ndocs` are used. Every problem in a file
is an InputError naming file, line (item index for .json) and field, raised before any model is loaded.
"""
from __future__ import annotations

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
    qa_pairs: list[list[str]] = field(default_factory=list)  # ASQA: short answers per disambiguation
    long_answer: str = ""  # ASQA

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
        gold = arc_label(require(obj, "answerKey", path, line, (str, int)))
        if gold not in ex.choices:
            raise InputError(f"{where(path, line, 'answerKey')}: '{gold}' is not one of the choices {list(ex.choices)}")
        ex.golds = [gold]
        ex.instruction, ex.input = task.instruction, question + "\n" + format_choices(ex.choices)
    elif task.name == "pubhealth":
        gold = _strings(require(obj, "answers", path, line), path, line, "answers")[0].strip().lower()
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
        ex.golds = [a for pair in ex.qa_pairs for a in pair]
        ex.instruction, ex.input = task.instruction, question
    else:
        ex.golds = _strings(require(obj, "answers", path, line), path, line, "answers")
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


def score(task: Task, ex: Example, answer: str) -> dict:
    """Per-example score in [0, 1] (`str_em` for ASQA) and, for accuracy tasks, the parsed label
    (`label: None` = unparseable, counted as wrong)."""
    from smart import metrics

    if task.metric == "accuracy":
        value, label = metrics.accuracy(answer, ex.golds[0], ex.choices or None)
        return {"score": value, "label": label}
    if task.metric == "asqa":
        return {"score": metrics.str_em(answer, ex.qa_pairs)}
    return {"score": metrics.match(answer, ex.golds)}


def gold_passages(task: Task, ex: Example) -> list[int] | None:
    """1-based indices of the example's passages that hold a gold answer (for ARC, the gold choice's text); None
    when the gold is a label with no text to look for (PubHealth)."""
    from smart import metrics

    if task.name == "pubhealth":
        return None
    golds = [ex.choices[ex.golds[0]]] if ex.choices else ex.golds
    return [i for i, p in enumerate(ex.passages, start=1) if metrics.match(p.text, golds)]


def aggregate(task: Task, examples: list[Example], rows: list[dict]) -> dict:
    """Dataset-level numbers (percentages): score (match / accuracy / str-em), ASQA ROUGE-L and MAUVE."""
    from smart import metrics

    n = len(rows)
    out: dict = {"score": 100 * sum(r["score"] for r in rows) / n if n else 0.0, "n": n}
    if task.metric == "accuracy":
        out["unparsed"] = sum(r.get("label") is None for r in rows)
    if task.metric == "asqa":
        answers, references = [r["answer"] for r in rows], [ex.long_answer for ex in examples]
        out["str_em"] = out["score"]
        out["rouge_l"] = 100 * metrics.rouge_l(answers, references)
        mauve = metrics.mauve(answers, references)
        if mauve is not None:
            out["mauve"] = 100 * mauve
    return out
