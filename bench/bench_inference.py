"""Inference throughput of the SMART pipeline (questions/s): stage-batched over the whole set vs a per-question
loop (transformers), and vLLM vs transformers on the stage-batched pipeline (where vLLM is installed).

    python bench/bench_inference.py                       # embedded SmolLM2, questions made from the embedded corpus
    python bench/bench_inference.py --input_file data/demo/dev.jsonl --n 400 --n_loop 32 --model_name out/smart

Every stage runs to its token limit unless the model writes the stop string, so an untrained model measures the
worst case. The per-question loop runs on the first --n_loop questions only (it is the slow baseline); rates are
per question, so they compare. vLLM's start-up time is printed apart and left out of its rate. On a small CPU
machine (2-4 cores), where the backend runs vLLM's engine in the calling process with threads on every core, vLLM
also runs with separate engine processes (start-up ratio) and with all of vLLM's own defaults (separate processes,
one core kept for its scheduler; rate ratio). On CPU, vLLM also runs with a KV cache of --baseline_kv_cache_gb
(1 GiB, the earlier default) against the backend's default (`cpu_kv_cache_gb`): the Response Generator's prompts
extend the Fact Locator's, and vLLM's prefix cache reuses them only while they are still cached, which shows with
a full dev set and the quickstart's limits:

    python bench/bench_inference.py --skip_hf --model_name runs/quickstart/stage2/merged --n 200 --limits 64 160 64 \
        --input_file data/real_200_200_open0.6_claim0.2_choice0.2/dev/popqa.jsonl

Each vLLM run has a fresh process: vLLM caches its environment once an engine is up.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from smart import defaults
from smart.evaluation.tasks import Example, load_examples
from smart.inference import agents
from smart.inference.backends import SMALL_CPU_CORES, cpu_kv_cache_gb, load_backend, vllm_available
from smart.trajectory import Passage

from fresh_process import in_fresh_process


def corpus_questions(n: int, ndocs: int) -> list[Example]:
    """Demo-like questions: one per passage spread over the embedded corpus, its ctxs that passage and its neighbours."""
    from smart.retrieval.passages import PassageStore

    store = PassageStore(defaults.prepare_passages())
    step = max(1, (len(store) - ndocs) // n)
    examples = []
    for i in range(n):
        rows = [store.get_row(i * step + j) for j in range(ndocs)]
        question = f"What is {rows[0]['title']} known for?"
        examples.append(Example(key=str(i), line=i + 1, question=question, instruction=question, input="",
                                golds=[rows[0]["title"]], passages=[Passage(r["title"], r["text"]) for r in rows],
                                passage_ids=[r["id"] for r in rows]))
    return examples


def rate(backend, examples: list[Example], limits: agents.Limits, batched: bool) -> float:
    start = time.perf_counter()
    if batched:
        agents.run_smart(backend, examples, agents.static_retrieval, limits)
    else:
        for ex in examples:
            agents.run_smart(backend, [ex], agents.static_retrieval, limits)
    return len(examples) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name", default=defaults.EMBEDDED)
    p.add_argument("--input_file", default=None, help="a qa-format file (question/answers/ctxs); default: made from the corpus")
    p.add_argument("--n", type=int, default=64, help="questions for the stage-batched runs")
    p.add_argument("--n_loop", type=int, default=8, help="questions for the per-question loop")
    p.add_argument("--ndocs", type=int, default=3)
    p.add_argument("--batch_size", type=int, default=16, help="transformers batch size")
    p.add_argument("--limits", type=int, nargs=3, default=[24, 32, 16], metavar=("INTENT", "LOCATOR", "GENERATOR"),
                   help="max new tokens per stage")
    p.add_argument("--skip_vllm", action="store_true")
    p.add_argument("--skip_hf", action="store_true", help="only the vLLM runs")
    p.add_argument("--baseline_kv_cache_gb", type=float, default=1.0, help="vLLM's KV cache to compare on CPU")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    examples = (load_examples("qa", args.input_file, args.ndocs, limit=args.n) if args.input_file
                else corpus_questions(args.n, args.ndocs))
    limits = agents.Limits(*args.limits)
    print(f"{len(examples)} questions, {args.ndocs} passages each, stage limits {args.limits}, model {args.model_name}")

    if not args.skip_hf:
        hf = load_backend("hf", args.model_name, batch_size=args.batch_size)
        loop = rate(hf, examples[:args.n_loop], limits, batched=False)
        print(f"transformers, per-question loop ({min(args.n_loop, len(examples))} q): {loop:8.2f} questions/s")
        batched = rate(hf, examples, limits, batched=True)
        print(f"transformers, stage-batched    ({len(examples)} q): {batched:8.2f} questions/s")
        print(f"  stage-batched / loop: {batched / loop:.2f}x")
        hf.close()

    if args.skip_vllm or not vllm_available():
        print("vLLM: skipped (" + ("--skip_vllm" if args.skip_vllm else "not installed") + ")")
        return
    fast_start, fast = in_fresh_process(vllm_run, args.model_name, examples, limits, {})
    print(f"vLLM start-up: {fast_start:.1f} s")
    print(f"vLLM, stage-batched            ({len(examples)} q): {fast:8.2f} questions/s")
    if not args.skip_hf:
        print(f"  vLLM / transformers (stage-batched): {fast / batched:.2f}x;  "
              f"vLLM batched / transformers loop: {fast / loop:.2f}x")
    if not torch.cuda.is_available():
        _, small = in_fresh_process(vllm_run, args.model_name, examples, limits, {}, args.baseline_kv_cache_gb)
        print(f"vLLM, KV cache {args.baseline_kv_cache_gb:g} GiB: {small:8.2f} questions/s; the default "
              f"({cpu_kv_cache_gb():g} GiB) / {args.baseline_kv_cache_gb:g} GiB: {fast / small:.2f}x")
    if not 1 < len(os.sched_getaffinity(0)) <= SMALL_CPU_CORES:
        return
    # the backend's small-machine setup (setup_vllm_for_small_cpu) against vLLM's own defaults
    spawned_start, spawned = in_fresh_process(vllm_run, args.model_name, examples, limits,
                                              {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    print(f"vLLM, separate engine processes: start-up {spawned_start:.1f} s, {spawned:8.2f} questions/s")
    print(f"  start-up, separate processes / in this process: {spawned_start / fast_start:.2f}x")
    own_start, own = in_fresh_process(vllm_run, args.model_name, examples, limits,
                                      {"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto"})
    print(f"vLLM, its own defaults (one core for its scheduler): start-up {own_start:.1f} s, {own:8.2f} questions/s")
    print(f"  threads on every core / vLLM's own binding: {fast / own:.2f}x")


def vllm_run(model: str, examples: list[Example], limits: agents.Limits, env: dict[str, str],
             kv_cache_gb: float | None = None) -> tuple[float, float]:
    """(start-up seconds, questions/s) of vLLM with `env` set first (and a KV cache of `kv_cache_gb`, default the
    backend's); call it in a fresh process."""
    os.environ.update(env)
    start = time.perf_counter()
    backend = load_backend("vllm", model, kv_cache_gb=kv_cache_gb)
    startup = time.perf_counter() - start
    result = (startup, rate(backend, examples, limits, batched=True))
    backend.close()
    return result


if __name__ == "__main__":
    main()
