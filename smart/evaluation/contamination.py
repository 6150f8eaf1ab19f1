"""Contamination check: how many rows of an evaluation file also occur in the training data.

Training side: trajectory records as data_creation/combine_data.py writes them ({id, dataset_name, type,
instruction, input, output}; the template demo's and the authors' files alike) or question rows ({id, question},
e.g. train_questions.jsonl). A record's question is the request it was built from: the text before `</eoi>` (or
before the first agent step) of `instruction` and of `input`, leaving out fixed task instructions (the claim and
multiple-choice instructions, whose claim or question is in `input`) and the trailing choice lines (`A: ...`).
Evaluation side: the bare question or claim as smart.evaluation.tasks.load_examples reads it (ARC without its choices).

An evaluation row overlaps the training data in three ways, counted separately and as their union:
- same_question: the same question after smart.evaluation.metrics.normalize_answer (case, punctuation, articles, spacing);
- same_id: a shared source id. A row's ids are its `id` (or `sample_id`), `<source>_<id>` when it has a `source`,
  and for trajectory records the id without the `_<type>` suffix of short records and without the
  `<dataset_name>_` prefix combine adds (`real_triviaqa_train_dprdev_5249` -> `triviaqa_train_dprdev_5249`);
- ngram: a shared n-gram of the normalized question tokens; a question shorter than n is one n-gram, itself whole.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from smart.data.convert import DIALOGUE_INSTRUCTION, FACT_VERIFICATION_INSTRUCTION, MULTIPLE_CHOICE_INSTRUCTION
from smart.evaluation.metrics import normalize_answer
from smart.evaluation.tasks import PAPER_EVAL_FILES, TASKS, load_examples
from smart.io import InputError, iter_jsonl, read_records, where
from smart.trajectory import EOI, RETRIEVAL_OPEN, STEP_TYPES

KINDS = ("same_question", "same_id", "ngram")
DEFAULT_NGRAM = 8
FIXED_INSTRUCTIONS = frozenset({t.instruction for t in TASKS.values() if t.instruction}
                               | {FACT_VERIFICATION_INSTRUCTION, MULTIPLE_CHOICE_INSTRUCTION, DIALOGUE_INSTRUCTION})
# where a request ends: its end marker, else the first step after it (files without `</eoi>`)
_REQUEST_END = re.compile("|".join(re.escape(m) for m in (EOI, RETRIEVAL_OPEN, "<|retrieval|>", "<|Reconstructor|>",
                                                           "<|Locator|>", "<|Generator|>")))
_CHOICE_LINE = re.compile(r"^[A-Z]: ")


@dataclass(frozen=True)
class Question:
    """One question of a file, with where it is and the source ids it carries."""

    file: str
    line: int
    id: str
    text: str
    ids: frozenset[str] = frozenset()


@dataclass
class EvalFile:
    """An evaluation file's questions and, per question, the first training question found for each kind."""

    file: str
    task: str
    questions: list[Question]
    found: list[dict[str, Question]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {kind: sum(kind in f for f in self.found) for kind in KINDS}
        return counts | {"any": sum(bool(f) for f in self.found)}

    def examples(self, k: int) -> list[dict]:
        """The first `k` overlapping rows, each with the training question of its first kind."""
        out = []
        for q, found in zip(self.questions, self.found):
            if found and len(out) < k:
                kinds = [kind for kind in KINDS if kind in found]
                t = found[kinds[0]]
                out.append({"kinds": kinds, "eval_line": q.line, "eval_id": q.id, "eval_question": q.text,
                            "train_file": t.file, "train_line": t.line, "train_id": t.id, "train_question": t.text})
        return out


class Overlap:
    """The evaluation questions indexed by each kind's keys; training questions are scanned against them one at a
    time (the evaluation side is small, the training side is streamed)."""

    def __init__(self, evals: list[EvalFile], n: int = DEFAULT_NGRAM):
        if n < 1:
            raise InputError(f"n-gram size {n}: must be at least 1")
        self.n, self.evals = n, evals
        self.train_files: list[str] = []
        self.train_records = 0
        self.train_questions: set[str] = set()
        self.index: dict[str, dict] = {kind: defaultdict(list) for kind in KINDS}
        for e in evals:
            e.found = [{} for _ in e.questions]
            for q, found in zip(e.questions, e.found):
                for kind, keys in self.keys(q).items():
                    for key in keys:
                        self.index[kind][key].append(found)

    def keys(self, q: Question) -> dict[str, set]:
        """What each kind of overlap compares: the normalized question, the source ids, the n-grams."""
        norm = normalize_answer(q.text)
        return {"same_question": {norm} if norm else set(), "same_id": set(q.ids),
                "ngram": ngrams(norm.split(), self.n)}

    def scan(self, q: Question) -> None:
        """Mark the evaluation questions that `q`, a training question, overlaps (the first one found is kept)."""
        keys = self.keys(q)
        self.train_questions |= keys["same_question"]
        for kind, kind_keys in keys.items():
            for key in kind_keys:
                for found in self.index[kind].get(key, ()):
                    found.setdefault(kind, q)


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    """The n-grams of `tokens`; fewer than n tokens make one n-gram, the whole sequence (none when empty)."""
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def source_ids(row: dict) -> frozenset[str]:
    """The source ids a row carries (see the module docstring)."""
    ids = {str(row[k]) for k in ("id", "sample_id") if row.get(k) not in (None, "")}
    if source := row.get("source"):
        ids |= {f"{source}_{i}" for i in ids if not i.startswith(f"{source}_")}
    kind = row.get("type")
    if kind in STEP_TYPES:
        ids |= {i.removesuffix(f"_{kind}") for i in ids}
    if dataset := row.get("dataset_name"):
        ids |= {i.removeprefix(f"{dataset}_") for i in ids if i.startswith(f"{dataset}_")}
    return frozenset(ids)


def request_question(text: str) -> str:
    """The request part of an instruction or input field, without trailing choice lines; "" for a fixed task
    instruction."""
    text = _REQUEST_END.split(text, maxsplit=1)[0].strip()
    lines = text.split("\n")
    while len(lines) > 1 and _CHOICE_LINE.match(lines[-1].strip()):
        lines.pop()
    text = "\n".join(lines).strip()
    return "" if " ".join(text.split()) in FIXED_INSTRUCTIONS else text


def record_questions(record: dict, path: str | os.PathLike, line: int) -> list[str]:
    """The questions a training record was built from: from `instruction`/`input` (trajectory records), else from
    `question` (question rows). InputError, naming file, line and field, when there is none."""
    if "instruction" not in record and "input" not in record:
        if "question" not in record:
            raise InputError(f"{where(path, line, 'instruction')}: missing (a trajectory record needs "
                             "instruction/input, a question row question)")
        names = ("question",)
    else:
        names = ("instruction", "input")
    questions = []
    for name in names:
        value = record.get(name) or ""
        if not isinstance(value, str):
            raise InputError(f"{where(path, line, name)}: expected str, got {type(value).__name__}")
        if text := request_question(value):
            questions.append(text)
    if not questions:
        raise InputError(f"{where(path, line, names[0])}: no question (empty, or only a task instruction)")
    return questions


def _records(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line, record) of a .jsonl file, parsed as it goes, or of a .json list; an empty file is an error."""
    if not str(path).endswith(".jsonl"):
        yield from read_records(path)
        return
    empty = True
    for line, record in iter_jsonl(path):
        empty = False
        yield line, record
    if empty:
        raise InputError(f"{path}: file is empty")


def scan_training(overlap: Overlap, paths: Iterable[str | os.PathLike]) -> None:
    """Scan every question of trajectory files (or question files) against the evaluation questions."""
    for path in paths:
        overlap.train_files.append(str(path))
        for line, record in _records(path):
            overlap.train_records += 1
            ids = source_ids(record)
            for text in record_questions(record, path, line):
                overlap.scan(Question(str(path), line, str(record.get("id") or line), text, ids))


def infer_task(path: str | os.PathLike) -> str:
    """The task of an evaluation file from its name: a paper file name (smart.evaluation.tasks.PAPER_EVAL_FILES), else the
    longest task name within it (`popqa_dev.jsonl` -> popqa)."""
    name = Path(path).name
    for task, paper_name in PAPER_EVAL_FILES.items():
        if name == paper_name:
            return task
    found = [t for t in TASKS if t in name.lower()]
    if not found:
        raise InputError(f"{path}: cannot tell the task from the file name (none of {', '.join(TASKS)} in it); "
                         "name it with --tasks")
    return max(found, key=len)


def load_eval(path: str | os.PathLike, task: str) -> EvalFile:
    """The questions of an evaluation file, read and validated by smart.evaluation.tasks.load_examples (no passages needed)."""
    examples = load_examples(task, path, need_passages=False)
    rows = dict(read_records(path))
    return EvalFile(str(path), task, [Question(str(path), ex.line, ex.key, ex.question, source_ids(rows[ex.line]))
                                      for ex in examples])


def check(train: Iterable[str | os.PathLike], evals: Iterable[tuple[str | os.PathLike, str]],
          n: int = DEFAULT_NGRAM) -> Overlap:
    """The overlap of each evaluation file (path, task) with the training files."""
    overlap = Overlap([load_eval(path, task) for path, task in evals], n)
    scan_training(overlap, train)
    return overlap


def summary(overlap: Overlap, examples: int = 3) -> dict:
    """The numbers for --json and the report."""
    return {"ngram": overlap.n, "train": {"files": overlap.train_files, "records": overlap.train_records,
                                          "questions": len(overlap.train_questions)},
            "eval": [{"file": e.file, "task": e.task, "n": len(e.questions), **e.counts(),
                      "examples": e.examples(examples)} for e in overlap.evals]}


def format_report(overlap: Overlap, examples: int = 3) -> str:
    """The human-readable report: one line of counts per evaluation file, then its first overlapping rows."""
    out = [f"training: {overlap.train_records} records in {len(overlap.train_files)} file(s), "
           f"{len(overlap.train_questions)} distinct questions; n-gram size {overlap.n}"]
    for e in overlap.evals:
        c = e.counts()
        out.append(f"{e.file} ({e.task}): {len(e.questions)} rows | same question {c['same_question']} | same id "
                   f"{c['same_id']} | shared {overlap.n}-gram {c['ngram']} | any {c['any']}")
        for x in e.examples(examples):
            out.append(f"  [{','.join(x['kinds'])}] line {x['eval_line']} id {x['eval_id']}: {x['eval_question']!r}")
            out.append(f"      <-> {x['train_file']}:{x['train_line']} id {x['train_id']}: {x['train_question']!r}")
    return "\n".join(out)
