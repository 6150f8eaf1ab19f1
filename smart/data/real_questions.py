"""The demo's real questions: items written by people (public training and development splits), each kept because the
embedded corpus holds its answer (`data_creation/real_questions/`, sources and licences in its README).

Three shapes, the paper's three short-form evaluation shapes:
- open (question + gold `answers`: SQuAD, TriviaQA, WebQuestions, NQ) -> dev file shaped like PopQA;
- claim (claim under `question` + `answers` ["true"] / ["false"]: FEVER) -> dev file shaped like PubHealth;
- choice (question + `choices` [{label, text}] + `answerKey`: ARC-Easy, ARC-Challenge train, OpenBookQA, SciQ)
  -> dev file shaped like ARC-Challenge.
Every file in the folder is read; a seeded shuffle per shape puts the first `n_dev` items in dev, the rest in the
training pool, from which `training_sample` draws the demo's training items by a shape mix. Each item keeps its
`source` and `source_location`. The training items go through the data-creation pipeline (data_creation/).
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from smart.io import InputError, read_records, where

log = logging.getLogger(__name__)

SHAPES = ("open", "claim", "choice")
DEV_TASK = {"open": "popqa", "claim": "pubhealth", "choice": "arc_c"}
DEFAULT_MIX = {"open": 0.6, "claim": 0.2, "choice": 0.2}
_EVIDENCE_TAG = re.compile(r"^\[[^\]]*#\d+\]\s*")  # FEVER items quote their sentence as "[Title #k] sentence"


def shape_of(row: dict) -> str:
    if "choices" in row:
        return "choice"
    if row.get("label") is not None or row.get("answers") in (["true"], ["false"]):
        return "claim"
    return "open"


def _need(row: dict, name: str, kind, path, line: int):
    value = row.get(name)
    if not isinstance(value, kind) or not value:
        raise InputError(f"{where(path, line, name)}: missing or empty")
    return value


def check_row(row: dict, path, line: int) -> dict:
    """The row, validated for its shape, with `evidence` as a plain sentence (FEVER's "[Title #k]" tag removed)."""
    _need(row, "id", str, path, line)
    _need(row, "question", str, path, line)
    shape = shape_of(row)
    if shape == "choice":
        choices = _need(row, "choices", list, path, line)
        if not all(isinstance(c, dict) and isinstance(c.get("text"), str) and c.get("label") for c in choices):
            raise InputError(f"{where(path, line, 'choices')}: expected [{{label, text}}, ...]")
        if row.get("answerKey") not in {c["label"] for c in choices}:
            raise InputError(f"{where(path, line, 'answerKey')}: not one of the choices' labels")
    else:
        answers = _need(row, "answers", list, path, line)
        if not all(isinstance(a, str) and a.strip() for a in answers):
            raise InputError(f"{where(path, line, 'answers')}: expected non-empty strings")
    evidence = row.get("evidence")
    if evidence is not None and not isinstance(evidence, str):
        raise InputError(f"{where(path, line, 'evidence')}: expected a sentence")
    return {**row, "evidence": _EVIDENCE_TAG.sub("", evidence or "").strip()}


def load_real_questions(folder: str | Path) -> dict[str, list[dict]]:
    """Every *.jsonl of `folder`, validated, by shape (each shape sorted by id, a repeated question once). Duplicate
    ids are an error."""
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise InputError(f"{folder}: no real-question files (*.jsonl)")
    by_shape: dict[str, list[dict]] = {s: [] for s in SHAPES}
    seen: dict[str, str] = {}
    for path in files:
        for line, row in read_records(path):
            row = check_row(row, path, line)
            if row["id"] in seen:
                raise InputError(f"{where(path, line, 'id')}: duplicate id '{row['id']}' (also in {seen[row['id']]})")
            seen[row["id"]] = str(path)
            by_shape[shape_of(row)].append(row)
    return {s: _unique_questions(sorted(rows, key=lambda r: r["id"])) for s, rows in by_shape.items()}


def _unique_questions(rows: list[dict]) -> list[dict]:
    """The rows without repeats of a question (case and spacing aside; the first id kept, the rest counted and
    logged), so that no question is both in dev and in training."""
    seen, kept = set(), []
    for row in rows:
        key = " ".join(row["question"].lower().split())
        if key not in seen:
            seen.add(key)
            kept.append(row)
    if len(kept) < len(rows):
        log.info("real questions: %d repeated questions left out", len(rows) - len(kept))
    return kept


def split(by_shape: dict[str, list[dict]], n_dev: int, seed: int = 0) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(train pool, dev) by shape: a seeded shuffle per shape, dev = its first `n_dev` items, or at most half of the
    shape's items when it has fewer than 2 * n_dev (so training keeps every shape)."""
    train, dev = {}, {}
    for shape, rows in by_shape.items():
        rows = list(rows)
        random.Random(f"{seed}-{shape}").shuffle(rows)
        k = min(n_dev, len(rows) // 2)
        dev[shape], train[shape] = rows[:k], rows[k:]
    return train, dev


def parse_mix(text: str) -> dict[str, float]:
    """`open=0.5,claim=0.25,choice=0.25` -> shares summing to 1."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in SHAPES:
            raise InputError(f"--mix: unknown shape '{name}' (choose from {', '.join(SHAPES)})")
        try:
            mix[name] = float(value)
        except ValueError:
            raise InputError(f"--mix: '{part}' is not shape=share") from None
    if not mix or sum(mix.values()) <= 0 or min(mix.values()) < 0:
        raise InputError(f"--mix: '{text}' needs non-negative shares with a positive sum")
    return {s: v / sum(mix.values()) for s, v in mix.items()}


def training_sample(pool: dict[str, list[dict]], n: int, mix: dict[str, float], seed: int = 0) -> list[dict]:
    """`n` training items drawn by the shares of `mix` (rounded; a shape with too few items gives its shortfall to
    the largest remaining pool), claims evenly by label (`even_by_label`), in a seeded random order."""
    rng = random.Random(seed)
    want = {s: round(n * mix.get(s, 0.0)) for s in SHAPES}
    want[max(mix, key=mix.get)] += n - sum(want.values())
    for shape in SHAPES:
        spare = want[shape] - len(pool[shape])
        if spare > 0:
            want[shape] -= spare
            others = [s for s in SHAPES if s != shape and len(pool[s]) > want[s]]
            if others:
                want[max(others, key=lambda s: len(pool[s]) - want[s])] += spare
    if sum(min(want[s], len(pool[s])) for s in SHAPES) < n:
        raise InputError(f"--n_train {n}: only {sum(len(v) for v in pool.values())} training items in the pool")
    items = [row for s in SHAPES for row in even_by_label(rng, pool[s], min(want[s], len(pool[s])), s == "claim")]
    rng.shuffle(items)
    return items


def even_by_label(rng: random.Random, rows: list[dict], k: int, by_label: bool) -> list[dict]:
    """`k` rows drawn at random; with `by_label`, as evenly over the gold labels (`answers[0]`) as the rows allow, a
    label short of rows leaving its shortfall to the others: claims drawn by the pool's share came out 29 true to
    11 false, and the model learnt to answer `true` to every claim (docs/experiments.md, 2026-12-07)."""
    if not by_label:
        return rng.sample(rows, k)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["answers"][0], []).append(row)
    want, left = {}, k
    for i, label in enumerate(sorted(groups, key=lambda x: len(groups[x]))):  # smallest label first
        want[label] = min(len(groups[label]), left // (len(groups) - i))
        left -= want[label]
    return [row for label in sorted(groups) for row in rng.sample(groups[label], want[label])]


def dev_record(shape: str, row: dict) -> dict:
    """A dev item in the paper's evaluation file shape (no passages yet: retrieval adds `ctxs`)."""
    base = {"id": row["id"], "question": row["question"], "source": row.get("source", "")}
    if shape == "choice":
        return {**base, "choices": {"text": [c["text"] for c in row["choices"]],
                                    "label": [c["label"] for c in row["choices"]]}, "answerKey": row["answerKey"]}
    return {**base, "answers": row["answers"]}
