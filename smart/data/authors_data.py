"""The authors' released trajectory files (github yueshengbin/SMART, data_creation/example/) in our exact format.

Their records, {id, dataset_name, type?, instruction, input, output}, carry `</eoi>\\n\\n` and (short ones) the
earlier steps inside `instruction` or `input`, as ours do. What differs is repaired, each repair named by its kind:

- `header <|Locator|> without colon` (any agent header): `<|Locator|>\\n` -> `<|Locator|>:\\n`
- `opening <|retrieval|>`: `<|retrieval|>` -> `<retrieval>`
- `empty [Cite] list`: `answer \\n[Cite]: </eog>` -> `answer</eog>`
- `type alias`: ` fac_locator,`, `intent_reconstructor`, `response_generator` -> ours (trajectory.record_type)
- `missing type`: a record without `type` is long; `missing input`: a record without `input` gets ""
- `missing </eoi>`: a long record's request gets its end marker
- `locator block without relevant facts dropped`: a generator record whose prompt's locator block has no
  [Relevant] line becomes generator_no_facts (prompt = request + `<|Generator|>:\\n`), as trajectory_format.md says
- `stray whitespace`: every step is parsed and rendered again, which trims titles, passages, facts and answers and
  restores the fact line's leading space and the blank line after each step.

Ablated long records (an `ablation` other than full) are skipped: normalize the full ones, then derive ablations.
A record is kept only when rendering it again changed nothing but whitespace and the result passes
trajectory.validate_record with no problem. Other records are skipped under their reason (the validator's
problems of the repaired record), as data_creation's steps list the rows they reject; files that do not parse
raise smart.io.InputError naming file and line.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from smart.io import read_records, where
from smart.trajectory import (CITE, EOG, EOI, GENERATOR, GENERATOR_NO_FACTS, GENERATOR_TYPE, LOCATOR, LONG,
                              RECONSTRUCTOR, RELEVANT, RETRIEVAL_OPEN, SHORT_TYPES, parse_long, problem_kind,
                              record_type, render_long, request_text, short_trajectories, validate_record)

AUTHORS_RETRIEVAL_OPEN = "<|retrieval|>"
TEXT_FIELDS = ("instruction", "input", "output")
RECORD_KEYS = ("id", "dataset_name", "type", *TEXT_FIELDS)  # in the order our files write them


class Unrepairable(ValueError):
    """A record that cannot be brought to the format; the message is the reason."""


def _bare(header: str) -> str:
    """`<|Locator|>` of the header `<|Locator|>:\\n`."""
    return header[:header.index(":")]


# (kind, pattern, replacement), applied to the text after `</eoi>` and to the output
TEXT_REPAIRS = [
    *((f"header {_bare(h)} without colon", re.compile(re.escape(_bare(h)) + r"(?![ \t]*:)[ \t]*\n?"), h)
      for h in (RECONSTRUCTOR, LOCATOR, GENERATOR)),
    (f"opening {AUTHORS_RETRIEVAL_OPEN}", re.compile(re.escape(AUTHORS_RETRIEVAL_OPEN)), RETRIEVAL_OPEN),
    (f"empty {CITE} list", re.compile(r"\s*" + re.escape(CITE) + r"\s*:?\s*(?=" + re.escape(EOG) + ")"), ""),
]


def _repair_text(text: str) -> tuple[str, list[str]]:
    kinds = []
    for kind, pattern, replacement in TEXT_REPAIRS:
        text, n = pattern.subn(replacement, text)
        if n:
            kinds.append(kind)
    return text, kinds


def _steps_field(record: dict) -> str | None:
    """The field holding `</eoi>`, after which the earlier steps follow; None without the marker."""
    return next((name for name in ("input", "instruction") if EOI in record[name]), None)


def _squash(text: str) -> str:
    """The text without its whitespace: what rendering again must not change."""
    return "".join(text.split())


def _reason(record: dict) -> str:
    return "; ".join(dict.fromkeys(problem_kind(p) for p in validate_record(record)))


def _repaired(record: dict) -> tuple[dict, list[str]]:
    """The record with the named repairs made and its whitespace as it was, and the kinds of those repairs."""
    problems = validate_record(record)
    if any(p.startswith("record:") for p in problems):
        raise Unrepairable("; ".join(problems))
    if record.get("ablation") not in (None, "full"):
        raise Unrepairable("ablated record (normalize the full trajectories, then derive the ablations)")
    kind = record_type(record)
    if kind != LONG and kind not in SHORT_TYPES:
        raise Unrepairable(f"unknown type {record.get('type')!r}")
    repairs = [] if record.get("type") == kind else ["type alias" if record.get("type") else "missing type"]
    if record.get("input") is None:
        repairs.append("missing input")
    out = {**record, "type": kind, "input": record.get("input") or ""}
    for name in ("instruction", "input"):
        head, eoi, steps = out[name].partition(EOI)
        steps, kinds = _repair_text(steps)
        out[name] = head + eoi + steps
        repairs += kinds
    out["output"], kinds = _repair_text(out["output"])
    repairs += kinds
    name = _steps_field(out)
    if name is None:
        if kind != LONG:
            raise Unrepairable(f"{kind} record without {EOI}")
        out["instruction"], out["input"] = request_text(out["instruction"], out["input"])
        repairs.append(f"missing {EOI}")
    else:
        head, eoi, steps = out[name].partition(EOI)
        if kind == GENERATOR_TYPE and LOCATOR in steps and GENERATOR in steps and RELEVANT not in steps:
            out[name] = head + eoi + "\n\n" + GENERATOR + steps.partition(GENERATOR)[2]
            out["type"] = GENERATOR_NO_FACTS
            repairs.append("locator block without relevant facts dropped")
    return out, repairs


def _rendered(record: dict) -> dict | None:
    """instruction, input and output of a repaired record rendered again from what parses out of them;
    None when its steps do not make a record of its type."""
    name = _steps_field(record)
    head, _, steps = record[name].partition(EOI)
    request = {**record, name: head}
    if record["type"] == LONG:
        instruction, input = request_text(request["instruction"], request["input"])
        return {"instruction": instruction, "input": input, "output": render_long(parse_long(record["output"])[0])}
    t, _ = parse_long(steps + record["output"])
    records = short_trajectories(request["instruction"], request["input"], t)
    return next((r for r in records if r["type"] == record["type"]), None)


def normalize_record(record: dict) -> tuple[dict, list[str]]:
    """`record` in our exact format and the kinds of repair it took; raises Unrepairable with the reason."""
    repaired, repairs = _repaired(record)
    rendered = _rendered(repaired)
    if rendered is None or any(_squash(rendered[f]) != _squash(repaired[f]) for f in TEXT_FIELDS):
        raise Unrepairable(_reason(repaired) or "rendering again would change the text")
    normalized = {**repaired, **rendered}
    if validate_record(normalized):
        raise Unrepairable(_reason(normalized))
    if any(normalized[f] != repaired[f] for f in TEXT_FIELDS):
        repairs.append("stray whitespace")
    ordered = {key: normalized[key] for key in RECORD_KEYS if key in normalized}
    return {**ordered, **normalized}, list(dict.fromkeys(repairs))


@dataclass
class Normalized:
    """What normalize_records made of a stream of records."""

    records: list[dict] = field(default_factory=list)
    repairs: Counter = field(default_factory=Counter)  # repair kind -> records it was made in
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> the skipped records' locations
    records_in: int = 0

    def report(self, max_locations: int = 10) -> dict:
        return {"records_in": self.records_in, "records_out": len(self.records),
                "repairs": dict(self.repairs.most_common()),
                "skipped": {reason: len(locations) for reason, locations in self.skipped.items()},
                "skipped_records": {reason: locations[:max_locations] for reason, locations in self.skipped.items()}}


def normalize_records(rows: Iterable[tuple[str, dict]]) -> Normalized:
    """Normalize (location, record) pairs, in order; a record that cannot be repaired is skipped under its reason,
    listed by location and id."""
    result = Normalized()
    for location, record in rows:
        result.records_in += 1
        try:
            normalized, repairs = normalize_record(record)
        except Unrepairable as e:
            result.skipped.setdefault(str(e), []).append(f"{location} ({record.get('id')})")
            continue
        result.records.append(normalized)
        result.repairs.update(repairs)
    return result


def normalize_files(paths: Iterable[str | os.PathLike]) -> Normalized:
    """Normalize the records of .json/.jsonl files; InputError (naming file and line) on a file that does not parse."""
    return normalize_records((where(path, line), record) for path in paths for line, record in read_records(path))
