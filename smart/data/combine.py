"""Step 4 of data creation: located items -> long and short trajectory records, and a stats report.

A located item is a unified item (smart.data.convert) with `queries` (step 1), `ctxs` (step 2) and, per ctx, `relevant`
and `fact` (step 3). Records: {id, dataset_name, type, instruction, input, output}, `type` in trajectory.LONG or
trajectory.STEP_TYPES; the prompt of a record is trajectory.format_prompt(instruction, input).

Optionally (`missed_facts`), the long records gain missed-fact records: for an open question whose answer lies
beyond the first sentence of passage 1, the chain with the Fact Locator having located that first sentence alone
(what a small trained locator most often writes) in the prompt, and the item's answer as the target
(`trajectory.generator_after_chain`): the Response Generator learns to read the passages when the facts miss.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from smart.data.convert import OPEN_QUESTIONS, check_items
from smart.data.locator import sentences
from smart.evaluation.metrics import match
from smart.trajectory import (LONG, Fact, Passage, Trajectory, format_prompt, generator_after_chain, normalize_space,
                              render_long, request_text, restated_request, short_trajectories, validate_long,
                              validate_short)


def trajectory_of(item: dict, restate_request: bool = False) -> Trajectory:
    """The trajectory of a located item: its queries, passages, per-passage verdicts, answer and citations; with
    `restate_request`, its request restated at the end of the retrieval block (`trajectory.restated_request`)."""
    passages = [Passage.from_ctx(ctx) for ctx in item.get("ctxs") or []]
    facts = []
    for i, (ctx, passage) in enumerate(zip(item.get("ctxs") or [], passages), start=1):
        fact = normalize_space(ctx.get("fact") or "")
        facts.append(Fact(i, True, passage.title, fact) if ctx.get("relevant") and fact else Fact(i, False))
    queries = [normalize_space(q) for q in item["queries"] if normalize_space(q)]
    request = restated_request(item.get("instruction") or "", item.get("input") or "") if restate_request else ""
    return Trajectory(queries=queries, passages=passages, facts=facts, answer=item["output"].strip(),
                      citations=[f.index for f in facts if f.relevant], request=request)


def records_of(item: dict, t: Trajectory | None = None) -> tuple[dict, list[dict], list[str]]:
    """(long record, short records, problems) of an item, whose trajectory `t` is built here unless given; problems
    non-empty means the item's trajectory is not valid."""
    t = t or trajectory_of(item)
    instruction, input = request_text(item.get("instruction") or "", item.get("input") or "")
    base = {"id": item["id"], "dataset_name": item["dataset_name"]}
    long = {**base, "type": LONG, "instruction": instruction, "input": input, "output": render_long(t)}
    shorts = [{"id": f"{item['id']}_{r['type']}", "dataset_name": item["dataset_name"], **r}
              for r in short_trajectories(item.get("instruction") or "", item.get("input") or "", t)]
    problems = validate_long(long["output"]) + [p for r in shorts for p in validate_short(r)]
    if not t.queries:
        problems.append("no query")
    return long, shorts, problems


def missed_fact_record(item: dict, t: Trajectory) -> dict | None:
    """The missed-fact record of an open question whose trajectory is `t` (see the module docstring), or None: when
    the item is no open question, when no located fact holds a gold answer, or when passage 1's first sentence
    holds one."""
    golds = [a for a in item.get("answers") or [] if isinstance(a, str) and a.strip()]
    if item.get("task_type") not in OPEN_QUESTIONS or not golds or not t.passages:
        return None
    first = next(iter(sentences(t.passages[0].text)), "")
    if not first or match(first, golds) or not any(match(f.text, golds) for f in t.relevant):
        return None
    missed = Trajectory(queries=t.queries, passages=t.passages, answer=t.answer, request=t.request,
                        facts=[Fact(1, True, t.passages[0].title, first)] + [Fact(i, False) for i in
                                                                              range(2, len(t.passages) + 1)])
    instruction, input = request_text(item.get("instruction") or "", item.get("input") or "")
    return {"id": f"{item['id']}_missed_fact", "dataset_name": item["dataset_name"],
            **generator_after_chain(instruction, input, missed)}


def combine(rows: list[tuple[int, dict]], missed_facts: bool = False, restate_request: bool = False
            ) -> tuple[list[dict], list[dict], list[dict], dict[str, list[str]]]:
    """(usable items, long records, short records, rejected ids by reason), in id order. Items whose trajectory
    would not validate (e.g. an answer holding a format tag) are rejected as `invalid_trajectory`. With
    `restate_request`, every retrieval block ends with the item's request restated (`trajectory_of`). With
    `missed_facts`, each kept item's missed-fact record (if any) follows its long record; one that would not validate
    is left out and its item id listed as `invalid_missed_fact`."""
    items, rejected = check_items(rows, needs=("queries", "ctxs"))
    kept, longs, shorts = [], [], []
    for item in sorted(items, key=lambda x: x["id"]):
        t = trajectory_of(item, restate_request)
        long, short, problems = records_of(item, t)
        if problems:
            rejected.setdefault("invalid_trajectory", []).append(item["id"])
            continue
        kept.append(item)
        longs.append(long)
        shorts += short
        if missed_facts and (missed := missed_fact_record(item, t)):
            if validate_short(missed):
                rejected.setdefault("invalid_missed_fact", []).append(item["id"])
            else:
                longs.append(missed)
    return kept, longs, shorts, rejected


def percentiles(values: list[int]) -> dict[str, int]:
    if not values:
        return {}
    return {f"p{q}": int(np.percentile(values, q)) for q in (50, 90, 99)} | {"max": int(max(values))}


def trajectory_stats(items: list[dict], records: list[dict], tokenizer=None) -> dict:
    """Counts per dataset and type, relevant-passage ratios, flags of earlier steps, token lengths per type
    (prompt + output, with `tokenizer` when given)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        counts[r["dataset_name"]][r["type"]] += 1
    ctxs = [c for item in items for c in item.get("ctxs") or []]
    stats = {
        "items": len(items), "records": len(records),
        "counts": {d: dict(sorted(c.items())) for d, c in sorted(counts.items())},
        "types": dict(sorted(Counter(r["type"] for r in records).items())),
        "passages": len(ctxs),
        "relevant_ratio": round(sum(bool(c.get("relevant")) for c in ctxs) / len(ctxs), 4) if ctxs else 0.0,
        "items_with_relevant": round(sum(any(c.get("relevant") for c in item.get("ctxs") or []) for item in items)
                                     / len(items), 4) if items else 0.0,
        "queries_per_item": round(sum(len(item["queries"]) for item in items) / len(items), 3) if items else 0.0,
        "flags": dict(sorted(Counter(f for item in items for f in item.get("flags", [])).items())),
    }
    if tokenizer is not None:
        lengths: dict[str, list[int]] = defaultdict(list)
        texts = [format_prompt(r["instruction"], r["input"]) + r["output"] for r in records]
        for r, ids in zip(records, tokenizer(texts, add_special_tokens=False)["input_ids"]):
            lengths[r["type"]].append(len(ids))
        stats["tokens"] = {t: percentiles(v) for t, v in sorted(lengths.items())}
    return stats


def load_tokenizer(name: str | None):
    """A tokenizer for the length stats: a path or hub name, `embedded` (SmolLM2), or None/`none` for no lengths."""
    if name in (None, "", "none"):
        return None
    from transformers import AutoTokenizer

    from smart.defaults import resolve_llm

    return AutoTokenizer.from_pretrained(resolve_llm(name))
