r"""Rescore a predictions file against the evaluation file it answered, under either protocol (smart.evaluation.protocols).

    python eval/score.py --task popqa --input_file eval_data/popqa_longtail_w_gs.jsonl \
        --predictions results/popqa_smart.jsonl --protocol paper

A predictions row (JSONL, or a .json list) needs only `answer`, and `id` where the evaluation file has ids: rows
join the items by id, or by order where the evaluation file has none. Items without a prediction are left out (n
says how many were scored). The numbers are those eval/run_eval.py writes in the run's metrics JSON (its `protocols`
entry), computed by the same code (smart.evaluation.metrics.aggregate). Prints the score, its 95% CI and n (and ASQA's other
numbers); with --json, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys

from smart.evaluation import protocols, tasks
from smart.evaluation.metrics import aggregate
from smart.io import InputError, exit_on_input_error, read_records, where


def read_predictions(path: str) -> list[tuple[int, dict]]:
    """(line, row) of a predictions file; every row needs a string `answer`."""
    records = read_records(path)
    for line, row in records:
        if not isinstance(row.get("answer"), str):
            raise InputError(f"{where(path, line, 'answer')}: missing, or not a string")
    return records


def join(examples: list[tasks.Example], predictions: list[tuple[int, dict]], path: str,
         input_file: str) -> tuple[list[tasks.Example], list[dict]]:
    """The (example, prediction) pairs, in the evaluation file's order: by `id` when every prediction names an item
    of the evaluation file, else by order when that file has no ids (its keys are its line numbers)."""
    by_key = {ex.key: ex for ex in examples}
    ids = [str(row["id"]) if row.get("id") is not None else None for _, row in predictions]
    if all(key in by_key for key in ids):
        seen: dict[str, int] = {}
        for (line, _), key in zip(predictions, ids):
            if key in seen:
                raise InputError(f"{where(path, line, 'id')}: duplicate id '{key}' (first at line {seen[key]})")
            seen[key] = line
        rows = {key: row for (_, row), key in zip(predictions, ids)}
        chosen = [ex for ex in examples if ex.key in rows]
        return chosen, [rows[ex.key] for ex in chosen]
    if all(ex.key == str(ex.line) for ex in examples):
        if len(predictions) > len(examples):
            raise InputError(f"{where(path, predictions[len(examples)][0])}: {len(predictions)} predictions for "
                             f"{len(examples)} items of {input_file} (no ids there: rows join by order)")
        return examples[:len(predictions)], [row for _, row in predictions]
    line, key = next((line, key) for (line, _), key in zip(predictions, ids) if key not in by_key)
    problem = "missing required field" if key is None else f"'{key}' is not an item of {input_file}"
    raise InputError(f"{where(path, line, 'id')}: {problem}")


def rescore(task: str, input_file: str, predictions_file: str, ndocs: int | None = None) -> dict:
    """The predictions' metrics under both protocols (metrics.aggregate's numbers) and `missing`, the items without a
    prediction. With `ndocs`, every item must also carry that many passages (as eval/run_eval.py checks)."""
    spec = tasks.get_task(task)
    examples = tasks.load_examples(spec, input_file, ndocs or 0, need_passages=ndocs is not None)
    chosen, rows = join(examples, read_predictions(predictions_file), predictions_file, input_file)
    return {**aggregate(spec, chosen, rows), "missing": len(examples) - len(chosen)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=list(tasks.TASKS))
    p.add_argument("--input_file", required=True, help="the evaluation file the predictions answered")
    p.add_argument("--predictions", required=True, help="predictions JSONL (id, answer), e.g. eval/run_eval.py's")
    p.add_argument("--protocol", choices=protocols.PROTOCOLS, default="strict",
                   help="strict: ours (the headline score); paper: Self-RAG's / ALCE's scoring, quirks included")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON line")
    p.add_argument("--ndocs", type=int, default=None, help="also require this many passages per item (as the run did)")
    args = p.parse_args(argv)
    with exit_on_input_error():
        metrics = rescore(args.task, args.input_file, args.predictions, args.ndocs)
    numbers = metrics["protocols"][args.protocol]
    if metrics["missing"]:
        print(f"warning: {metrics['missing']} items of {args.input_file} have no prediction: scored the "
              f"{numbers['n']} that do", file=sys.stderr)
    if args.json:
        print(json.dumps({"task": args.task, "protocol": args.protocol, **numbers, "missing": metrics["missing"]}))
        return 0
    extra = "".join(f", {k} {numbers[k]:.2f}" for k in ("em", "f1", "rouge_l", "rouge_lsum", "mauve") if k in numbers)
    extra += f", unparsed {numbers['unparsed']}" if "unparsed" in numbers else ""
    print(f"{args.task} ({protocols.metric_name(args.task, args.protocol)}, {args.protocol} protocol): "
          f"{protocols.cell(numbers['score'], numbers['ci95'], numbers['n'])}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
