#!/usr/bin/env python
"""Training throughput: padding-free packing vs plain per-batch padding, same model, examples, order and batch size.

Prints real (non-padding) tokens/s, the share of computed tokens that are real, seconds per step and the peak RSS
of each mode (each runs in its own process). An optional third mode (--modes padded,packed,single), `single` (one
example per micro-batch: neither padding nor packing), shows the CPU trade-off: packed rows under a mask pay
attention over the whole row (masked blocks included, (B*L)^2) on sdpa/eager, where flash-attention's varlen kernel
(GPU) and `packed_sdpa` pay only per example. Then the ladder in packed mode (--settings): float32, bf16 autocast,
+ the frozen LoRA base stored in bf16, + no LoRA dropout, + per-example attention (`packed_sdpa`: the quickstart's
settings), each as a ratio to the first.
Trajectories: --data FILE, else data/demo/train_long.jsonl when present, else synthetic long trajectories rendered
with trajectory.render_long from passages of the embedded corpus (1-2 queries x 3 passages, like the demo data).

    python bench/bench_training.py                     # SmolLM2-135M, LoRA r=16 all linear, 8 examples, batch 4
    python bench/bench_training.py --n_examples 64 --batch_size 8 --max_seq_length 2048
"""
from __future__ import annotations

import argparse
import random
import resource
import time

import torch

from smart import defaults, training
from smart import trajectory as T

from fresh_process import in_fresh_process

DEMO = defaults.REPO_ROOT / "data" / "demo" / "train_long.jsonl"


def synthetic_examples(n: int, seed: int) -> list[training.Example]:
    """Long trajectories over random corpus passages: the first passage of each query holds the fact."""
    from smart.passages import PassageStore

    store = PassageStore(defaults.prepare_passages())
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        n_queries = 1 if rng.random() < 0.7 else 2
        passages = [store.get(str(pid)) for pid in rng.sample(list(store.ids), 3 * n_queries)]
        passages = [T.Passage(p["title"], p["text"]) for p in passages]
        facts = []
        for j, p in enumerate(passages, start=1):
            relevant = j % 3 == 1
            facts.append(T.Fact(j, relevant, p.title if relevant else "", p.text.split(". ")[0] if relevant else ""))
        queries = [passages[3 * q].title for q in range(n_queries)]
        t = T.Trajectory(queries, passages, facts, answer=passages[0].title, citations=[1])
        question = " and ".join(queries) + "?"
        examples.append(training.Example(str(i), T.format_prompt(f"What do you know about {question}"), T.render_long(t)))
    return examples


# name -> (autocast precision, frozen LoRA base in bf16, LoRA dropout, attention): float32 up to the quickstart's
SETTINGS = {"fp32": ("no", False, 0.05, "sdpa"), "bf16": ("bf16", False, 0.05, "sdpa"),
            "bf16_base": ("bf16", True, 0.05, "sdpa"), "no_dropout": ("bf16", True, 0.0, "sdpa"),
            "quickstart": ("bf16", True, 0.0, training.PACKED_SDPA)}


def measure(args: argparse.Namespace, mode: str, setting: str) -> dict:
    """Set up model, LoRA and batches, time one mode's optimizer steps (call it in a fresh process)."""
    torch.manual_seed(args.seed)
    precision, bf16_base, dropout, attn = SETTINGS[setting]
    training.register_packed_attention()
    data = args.data or (DEMO if DEMO.exists() else None)
    examples = training.load_examples(data, args.n_examples) if data else synthetic_examples(args.n_examples, args.seed)
    model, tokenizer = training.load_model_and_tokenizer(args.model, use_special_tokens=True, attn_implementation=attn,
                                                         dtype=torch.bfloat16 if bf16_base else torch.float32)
    features, dropped = training.encode_all(examples, tokenizer, args.max_seq_length)
    random.Random(args.seed).shuffle(features)
    model = training.apply_lora(model, tokenizer, args.lora_rank, 2 * args.lora_rank, dropout, "all-linear", True).train()
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    groups = [features[i:i + args.batch_size] for i in range(0, len(features), args.batch_size)]
    batches = {"padded": lambda: [training.collate_padded(g, pad) for g in groups],
               "packed": lambda: [training.collate_packed(g) for g in groups],
               "single": lambda: [training.collate_packed([f]) for f in features]}[mode]()
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16")

    def step(batch: dict) -> None:
        with autocast:
            loss, _ = training.lm_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(training.collate_packed(features[:1]))  # warm-up step, untimed
    seconds, real, computed = 0.0, 0, 0
    for batch in batches:
        start = time.perf_counter()
        step(batch)
        seconds += time.perf_counter() - start
        real += int((batch["attention_mask"].sum() if "attention_mask" in batch else batch["input_ids"].numel()))
        computed += batch["input_ids"].numel()
    lengths = [len(f["input_ids"]) for f in features]
    return {"data": str(data or "synthetic long trajectories"), "n": len(features), "dropped": dropped,
            "lengths": (min(lengths), sum(lengths) / len(lengths), max(lengths)), "steps": len(batches),
            "seconds": seconds, "real": real, "computed": computed,
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=defaults.EMBEDDED, help="model folder ('embedded' = SmolLM2-135M-Instruct)")
    p.add_argument("--data", default=None, help="trajectory file (default: demo data, else synthetic)")
    p.add_argument("--n_examples", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--max_seq_length", type=int, default=512)
    p.add_argument("--lora_rank", type=int, default=16)
    p.add_argument("--modes", default="padded,packed", help="comma-separated: padded, packed, single")
    p.add_argument("--setting", default="fp32", choices=SETTINGS, help="precision/dropout of the batching runs")
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help="comma-separated SETTINGS compared in packed mode, the first as baseline ('' = skip)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    speed = {}
    print(f"## Batching ({args.setting}): LoRA r={args.lora_rank} all linear, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    for k, mode in enumerate(args.modes.split(",")):
        r = in_fresh_process(measure, args, mode, args.setting)
        if k == 0:
            print(f"data: {r['data']}; {r['n']} examples ({r['dropped']} dropped), tokens/example min {r['lengths'][0]} "
                  f"mean {r['lengths'][1]:.0f} max {r['lengths'][2]}")
        speed[mode] = r["real"] / r["seconds"]
        print(f"{mode:>7}: {speed[mode]:7.1f} real tokens/s  {r['computed'] / r['seconds']:7.1f} computed tokens/s  "
              f"real share {r['real'] / r['computed']:6.1%}  {r['seconds'] / r['steps']:6.2f} s/step  "
              f"peak RSS {r['rss']:,.0f} MiB")
    for mode in ("packed", "single"):
        if {mode, "padded"} <= speed.keys():
            print(f"{mode} vs padded (real tokens/s): {speed[mode] / speed['padded']:.2f}x")
    if not args.settings:
        return
    print("\n## Precision, LoRA dropout, attention (packed): " + "; ".join(
        f"{name} = autocast {precision}, base {'bf16' if bf16 else 'fp32'}, dropout {dropout}, {attn}"
        for name, (precision, bf16, dropout, attn) in SETTINGS.items()))
    base = None
    for setting in args.settings.split(","):
        r = in_fresh_process(measure, args, "packed", setting)
        tokens_per_second = r["real"] / r["seconds"]
        base = base or tokens_per_second
        print(f"{setting:>10}: {tokens_per_second:7.1f} tokens/s  {r['seconds'] / r['steps']:6.2f} s/step  "
              f"{tokens_per_second / base:5.2f}x the first  peak RSS {r['rss']:,.0f} MiB")


if __name__ == "__main__":
    main()
