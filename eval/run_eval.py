r"""Evaluate SMART or a baseline on one of the paper's datasets (zero-shot, greedy).

    python eval/run_eval.py --task popqa --input_file eval_data/popqa_longtail_w_gs.jsonl \
        --model_name out/smart_llama2_7b --method smart --ndocs 3 --output_file results/popqa_smart.jsonl

Several datasets and methods in one process (one model load), predictions as <output_dir>/<task>_<method>.jsonl:

    python eval/run_eval.py --task popqa pubhealth arc_c --input_file popqa.jsonl health.jsonl arc.jsonl \
        --method no_retrieval vanilla_rag modular --output_dir results/

Writes per-example predictions (JSONL, resumable: a rerun skips finished examples; each row scored under both
protocols, smart.evaluation.protocols), a metrics JSON beside each (`<output_file stem>.metrics.json`: both protocols, each with
n and a 95% CI; eval/score.py recomputes them from any predictions file), the trajectory viewer page beside each
(`<output_file stem>.html`, see eval/view_run.py) and appends a row to a markdown table (--results_table).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from smart import defaults
from smart.evaluation import tasks, viewer
from smart.evaluation.metrics import aggregate, append_results_row, gold_passages, score
from smart.inference import agents
from smart.inference.backends import CPU_KV_CACHE_GB, DTYPES, KINDS, Backend, check_model_dir, load_backend, resolve_model
from smart.io import InputError, ResumableJsonl, exit_on_input_error, write_json

log = logging.getLogger("run_eval")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, nargs="+", choices=list(tasks.TASKS),
                   help="dataset(s) (file shape, instruction, metric); one per --input_file")
    p.add_argument("--input_file", required=True, nargs="+", help="the dataset file(s) (.jsonl, .json list or {'data': [...]})")
    p.add_argument("--model_name", default=defaults.EMBEDDED,
                   help="model directory, hub name, LoRA adapter directory, served name (openai), or 'embedded'")
    p.add_argument("--method", default=["smart"], nargs="+", choices=agents.METHODS)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--output_file", help="predictions JSONL (appended to on resume), for one task and one method")
    out.add_argument("--output_dir", help="folder for <task>_<method>.jsonl predictions (any number of runs)")
    p.add_argument("--results_table", default=None, help="markdown table to append a results row to")
    p.add_argument("--ndocs", type=int, default=3, help="passages per query (static: the item's top ndocs ctxs)")
    p.add_argument("--max_new_tokens", type=int, default=None, help="generator tokens (default: the task's, 100/300)")
    p.add_argument("--max_intent_tokens", type=int, default=64)
    p.add_argument("--max_locator_tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--chunk_size", type=int, default=256,
                   help="examples per stage-batched round; each round's predictions are saved before the next")
    g = p.add_argument_group("generation backend")
    g.add_argument("--backend", default="auto", choices=KINDS, help="auto = vllm when importable, else hf")
    g.add_argument("--batch_size", type=int, default=8, help="prompts per generate call (hf) / requests in flight (openai)")
    g.add_argument("--dtype", default="auto", choices=DTYPES)
    g.add_argument("--world_size", type=int, default=1, help="tensor-parallel GPUs (vllm)")
    g.add_argument("--max_model_len", type=int, default=None)
    g.add_argument("--lora_path", default=None, help="evaluate a LoRA adapter on --model_name without merging")
    g.add_argument("--kv_cache_gb", type=float, default=None,
                   help=f"vLLM's KV cache in GiB (default on CPU: {CPU_KV_CACHE_GB:g}, at most a quarter of the "
                        "memory; on GPUs vLLM's own)")
    g = p.add_argument_group("retrieval")
    g.add_argument("--retrieval", default="static", choices=("static", "live"),
                   help="static: the items' own ctxs (the paper); live: search the corpus per reconstructed query")
    g.add_argument("--passages", default=defaults.EMBEDDED, help="live: psgs_w100-format TSV")
    g.add_argument("--passages_embeddings", default=None,
                   help="live: embedding shards glob (default for the embedded corpus: built once and cached)")
    g.add_argument("--retriever_model", default=defaults.EMBEDDED, help="live: query encoder")
    args = p.parse_args(argv)
    if len(args.task) != len(args.input_file):
        p.error(f"{len(args.task)} --task values but {len(args.input_file)} --input_file values (one task per file)")
    if args.output_file and len(args.task) * len(args.method) > 1:
        p.error("several tasks or methods write several files: use --output_dir")
    return args


def make_retrieve(args: argparse.Namespace) -> agents.Retrieve:
    if args.retrieval == "static":
        return agents.static_retrieval
    from smart.retrieval import retriever
    if args.passages_embeddings:
        r = retriever.Retriever.from_paths(args.retriever_model, args.passages, args.passages_embeddings)
    else:
        r = retriever.ensure_embedded_index(args.retriever_model, args.passages)
    return agents.LiveRetrieval(r, args.ndocs)


def run_one(args: argparse.Namespace, task_name: str, input_file: str, method: str, output_file: str,
            backend: Callable[[], Backend]) -> dict:
    """Predictions, metrics JSON and table row of one method on one dataset; `backend()` loads the model lazily."""
    start = time.perf_counter()
    task = tasks.get_task(task_name)
    need_passages = args.retrieval == "static" and method != "no_retrieval"
    examples = tasks.load_examples(task, input_file, args.ndocs, need_passages, args.limit)
    limits = agents.Limits(args.max_intent_tokens, args.max_locator_tokens, args.max_new_tokens or task.max_new_tokens)
    with ResumableJsonl(output_file, key="id") as out:
        other = {r.get("method") for r in out.done.values()} - {method}
        if other:
            raise InputError(f"{output_file}: holds predictions of method {sorted(other)}, not '{method}'; "
                             "use another --output_file")
        todo = [ex for ex in examples if ex.key not in out]
        log.info("%s %s: %d examples, %d already done, %d to run", task.name, method, len(examples),
                 len(examples) - len(todo), len(todo))
        before = dict(backend().stats) if todo else {}
        if todo:
            retrieve = make_retrieve(args)
            for i in range(0, len(todo), args.chunk_size):
                chunk = todo[i:i + args.chunk_size]
                for ex, row in zip(chunk, agents.run(method, backend(), chunk, retrieve, limits)):
                    out.write({**row, "golds": ex.golds, "gold_passages": gold_passages(task, ex),
                               **score(task, ex, row["answer"])})
                log.info("done %d/%d", min(i + args.chunk_size, len(todo)), len(todo))
        stats = {k: v - before.get(k, 0) for k, v in backend().stats.items()} if todo else {}
        rows = [out.done[ex.key] for ex in examples]

    metrics = {"task": task.name, "method": method, "model": args.model_name, "input_file": input_file}
    metrics.update(aggregate(task, examples, rows))
    metrics["fallbacks"] = dict(Counter(f for r in rows for f in r["fallbacks"]))
    metrics["examples_with_problems"] = sum(bool(r["problems"]) for r in rows)
    metrics["unparsed"] = metrics.get("unparsed", 0)
    metrics["settings"] = {k: getattr(args, k) for k in ("ndocs", "retrieval", "backend", "dtype", "world_size",
                                                          "max_model_len", "lora_path", "batch_size", "limit")}
    metrics["settings"].update(max_new_tokens=limits.generator, max_intent_tokens=limits.intent,
                               max_locator_tokens=limits.locator)
    if todo:
        metrics["settings"]["dtype_used"] = getattr(backend(), "dtype", args.dtype)
    metrics["wall_s"] = time.perf_counter() - start
    metrics["generated_tokens"] = stats.get("generated_tokens", 0)
    metrics["tokens_per_s"] = stats["generated_tokens"] / stats["seconds"] if stats.get("seconds") else 0.0
    metrics["examples_run"] = len(todo)
    write_json(metrics_path(output_file), metrics)
    log.info("wrote %s (trajectory viewer)", viewer.write_run_page(output_file))
    if args.results_table:
        append_results_row(args.results_table, metrics)
    return metrics


def evaluate(args: argparse.Namespace) -> list[dict]:
    """Every (task, method) run of the command line, sharing one model load."""
    if args.backend != "openai":  # a bad model path fails here, before any output is written
        check_model_dir(resolve_model(args.model_name, args.lora_path)[0])
    need_passages = args.retrieval == "static" and set(args.method) != {"no_retrieval"}
    for task, input_file in zip(args.task, args.input_file):  # every file is checked before the model loads
        tasks.load_examples(task, input_file, args.ndocs, need_passages, args.limit)
    loaded: list[Backend] = []

    def backend() -> Backend:
        if not loaded:
            loaded.append(load_backend(args.backend, args.model_name, dtype=args.dtype, batch_size=args.batch_size,
                                       world_size=args.world_size, max_model_len=args.max_model_len,
                                       lora_path=args.lora_path, kv_cache_gb=args.kv_cache_gb))
        return loaded[0]

    results = []
    try:
        for task, input_file in zip(args.task, args.input_file):
            for method in args.method:
                output_file = args.output_file or str(Path(args.output_dir) / f"{task}_{method}.jsonl")
                results.append(run_one(args, task, input_file, method, output_file, backend))
    finally:
        if loaded:
            loaded[0].close()
    return results


def metrics_path(output_file: str) -> Path:
    path = Path(output_file)
    return path.with_name(path.stem + ".metrics.json")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    with exit_on_input_error():
        results = evaluate(args)
    for metrics in results:
        extra = "".join(f", {k} {metrics[k]:.2f}" for k in ("rouge_l", "mauve") if k in metrics)
        print(f"{metrics['task']} {metrics['method']}: score {metrics['score']:.2f} (n={metrics['n']}{extra}; "
              f"paper protocol {metrics['protocols']['paper']['score']:.2f}); fallbacks {metrics['fallbacks']}, "
              f"unparsed {metrics['unparsed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
