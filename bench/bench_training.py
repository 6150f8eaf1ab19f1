#!/usr/bin/env python
"""Training throughput: padding-free packing vs plain per-batch padding, same model, examples, order and batch size.

Prints real (non-padding) tokens/s, the share of computed tokens that are real, seconds per step and the peak RSS
of each mode (each runs in its own process). An optional third mode (--modes padded,packed,single), `single` (one
example per micro-batch: neither padding nor packing), shows the CPU trade-off: packed rows under a mask pay
attention over the whole row (masked blocks included, (B*L)^2) on sdpa/eager, where flash-attention's varlen kernel
(GPU) and `packed_sdpa` pay only per example.

Then the ladder in packed mode (--settings), each rung as a ratio to the first: float32, bf16 autocast, + the frozen
LoRA base stored in bf16, + no LoRA dropout, + per-example attention (`packed_sdpa`: the quickstart's settings before
issue 34, `pre_issue`), + adapters fed the bf16 activations uncast (the quickstart's settings now).
For each rung it prints the achieved model FLOP/s (`step_flops`) and its ratio to this machine's bf16 matmul peak,
measured in the same run; then the PyTorch profiler's top operators at the last rung, and the speedup of the
quickstart settings over the pre-issue ones.
Trajectories: --data FILE, else the quickstart's data/real_*/trajectories/real_long.jsonl when present, else synthetic long trajectories rendered
with trajectory.render_long from passages of the embedded corpus (1-2 queries x 3 passages, like the demo data).

    python bench/bench_training.py                     # SmolLM2-135M, LoRA r=16 all linear, 16 examples, batch 2
    python bench/bench_training.py --n_examples 64 --batch_size 8 --max_seq_length 2048
"""
from __future__ import annotations

import argparse
import random
import resource
import time
from dataclasses import dataclass

import torch

from smart import defaults
from smart import trajectory as T
from smart.training import trainer as training
from fresh_process import in_fresh_process

# the quickstart's long trajectories (stage 2's data), when a quickstart has built them
QUICKSTART_DATA = sorted(defaults.REPO_ROOT.glob("data/real_*/trajectories/real_long.jsonl"))


def synthetic_examples(n: int, seed: int) -> list[training.Example]:
    """Long trajectories over random corpus passages: the first passage of each query holds the fact."""
    from smart.retrieval.passages import PassageStore

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


@dataclass(frozen=True)
class Setting:
    """One rung of the ladder: how a training step runs."""

    autocast: str  # "no" or "bf16"
    bf16_base: bool  # the frozen LoRA base stored in bf16
    dropout: float  # LoRA dropout
    attention: str  # attn_implementation
    cast_inputs: bool = True  # peft casts each adapter's input to float32 (autocast casts it back)


# float32 up to the quickstart's; PRE_ISSUE = the quickstart's settings before issue 34 (kept for the comparison)
PRE_ISSUE, QUICKSTART = "pre_issue", "quickstart"
SETTINGS = {"fp32": Setting("no", False, 0.05, "sdpa"), "bf16": Setting("bf16", False, 0.05, "sdpa"),
            "bf16_base": Setting("bf16", True, 0.05, "sdpa"), "no_dropout": Setting("bf16", True, 0.0, "sdpa"),
            PRE_ISSUE: Setting("bf16", True, 0.0, training.PACKED_SDPA),
            QUICKSTART: Setting("bf16", True, 0.0, training.PACKED_SDPA, cast_inputs=False)}


def bf16_peak(size: int = 4096, repeats: int = 4, trials: int = 5) -> float:
    """This machine's bf16 matrix-multiply peak in FLOP/s: large square `torch.matmul` calls on every core, the best
    of `trials` timings (a shared or throttled CPU varies from one second to the next)."""
    a, b = (torch.randn(size, size, dtype=torch.bfloat16) for _ in range(2))
    torch.matmul(a, b)  # warm-up (oneDNN picks its kernel)
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        best = max(best, 2 * size ** 3 * repeats / (time.perf_counter() - start))
    return best


def step_flops(model, batch: dict, lora_rank: int) -> int:
    """Model FLOPs of one training step on a packed row (matrix products only, a multiply-add = 2 FLOPs).

    Per token, each frozen linear layer costs 2*in*out forward and 2*in*out backward (its input's gradient; no weight
    gradient); its LoRA pair (rank r) 2*r*(in+out) forward and twice that backward (input and weight gradients).
    Attention costs 4*d per (query, earlier key) pair of each example forward and twice that backward (d = heads x
    head size). The tied LM head (vocabulary V x hidden h) runs only where a label is: 2*V*h forward, 2*V*h backward.
    """
    config = model.config
    linears = [m for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and "lora_" not in name and "lm_head" not in name]
    tokens = batch["input_ids"].numel()
    base = sum(m.in_features * m.out_features for m in linears)
    lora = sum(m.in_features + m.out_features for m in linears) * lora_rank
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [tokens]
    pairs = sum((b - a) * (b - a + 1) // 2 for a, b in zip(starts, starts[1:]))
    width = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    labelled = int((batch["labels"][0, 1:] != training.IGNORE_INDEX).sum())
    return (4 * tokens * base + 6 * tokens * lora + 12 * config.num_hidden_layers * width * pairs
            + 4 * labelled * config.vocab_size * config.hidden_size)


def measure(args: argparse.Namespace, mode: str, setting: str, profiled: bool = False) -> dict:
    """Set up model, LoRA and batches, time one mode's optimizer steps (call it in a fresh process); `profiled`:
    then the PyTorch profiler's top operators over three more steps."""
    torch.manual_seed(args.seed)
    rung = SETTINGS[setting]
    training.register_packed_attention()
    data = args.data or (QUICKSTART_DATA[0] if QUICKSTART_DATA else None)
    examples = training.load_examples(data, args.n_examples) if data else synthetic_examples(args.n_examples, args.seed)
    model, tokenizer = training.load_model_and_tokenizer(args.model, use_special_tokens=True,
                                                         attn_implementation=rung.attention,
                                                         dtype=torch.bfloat16 if rung.bf16_base else torch.float32)
    features, dropped = training.encode_all(examples, tokenizer, args.max_seq_length)
    random.Random(args.seed).shuffle(features)
    model = training.apply_lora(model, tokenizer, args.lora_rank, 2 * args.lora_rank, rung.dropout, "all-linear", True,
                                rung.cast_inputs).train()
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    groups = [features[i:i + args.batch_size] for i in range(0, len(features), args.batch_size)]
    batches = {"padded": lambda: [training.collate_padded(g, pad) for g in groups],
               "packed": lambda: [training.collate_packed(g) for g in groups],
               "single": lambda: [training.collate_packed([f]) for f in features]}[mode]()
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=rung.autocast == "bf16")

    def step(batch: dict) -> float:
        with autocast:
            loss, _ = training.lm_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    step(training.collate_packed(features[:1]))  # warm-up step, untimed
    seconds, real, computed, flops = 0.0, 0, 0, 0
    for batch in batches:
        start = time.perf_counter()
        last_loss = step(batch)
        seconds += time.perf_counter() - start
        real += int((batch["attention_mask"].sum() if "attention_mask" in batch else batch["input_ids"].numel()))
        computed += batch["input_ids"].numel()
        flops += step_flops(model, batch, args.lora_rank) if mode != "padded" else 0
    profile = ""
    if profiled:
        from torch.profiler import ProfilerActivity, profile as profiler

        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches[:3]:
                step(batch)
        profile = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top_ops)
    lengths = [len(f["input_ids"]) for f in features]
    return {"data": str(data or "synthetic long trajectories"), "n": len(features), "dropped": dropped,
            "lengths": (min(lengths), sum(lengths) / len(lengths), max(lengths)), "steps": len(batches),
            "seconds": seconds, "real": real, "computed": computed, "flops": flops, "profile": profile,
            "last_loss": last_loss,
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=defaults.EMBEDDED, help="model folder ('embedded' = SmolLM2-135M-Instruct)")
    p.add_argument("--data", default=None, help="trajectory file (default: demo data, else synthetic)")
    p.add_argument("--n_examples", type=int, default=16)
    p.add_argument("--batch_size", type=int, default=2, help="examples per packed step (the quickstart's stage 2: 2)")
    p.add_argument("--max_seq_length", type=int, default=512)
    p.add_argument("--lora_rank", type=int, default=16)
    p.add_argument("--modes", default="padded,packed", help="comma-separated: padded, packed, single")
    p.add_argument("--setting", default="fp32", choices=SETTINGS, help="the ladder rung of the batching runs")
    p.add_argument("--top_ops", type=int, default=12, help="profiler rows printed for the last rung (0 = no profile)")
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
    peak = in_fresh_process(bf16_peak)
    print(f"\n## Ladder (packed), model FLOPs utilization against this machine's bf16 matmul peak: "
          f"{peak / 1e12:.2f} TFLOP/s measured (4096^3 torch.matmul, {torch.get_num_threads()} threads)")
    for name, setting in SETTINGS.items():
        print(f"  {name} = {setting}")
    speed, results, names = {}, {}, args.settings.split(",")
    for name in names:
        r = results[name] = in_fresh_process(measure, args, "packed", name, name == names[-1] and args.top_ops > 0)
        speed[name] = r["real"] / r["seconds"]
        print(f"{name:>12}: {speed[name]:7.1f} tokens/s  {r['seconds'] / r['steps']:6.2f} s/step  "
              f"{speed[name] / speed[names[0]]:5.2f}x the first  {r['flops'] / r['seconds'] / 1e9:7.1f} GFLOP/s  "
              f"MFU {r['flops'] / r['seconds'] / peak:6.1%}  last-step loss {r['last_loss']:.4f}  "
              f"peak RSS {r['rss']:,.0f} MiB")
    if r["profile"]:
        print(f"\n## Where a step's time goes ({names[-1]}, PyTorch profiler, 3 steps, top {args.top_ops} by self CPU)")
        print(r["profile"])
    if {PRE_ISSUE, QUICKSTART} <= speed.keys():
        print(f"speedup of the quickstart settings over the pre-issue settings: {speed[QUICKSTART] / speed[PRE_ISSUE]:.2f}x")
    if QUICKSTART in results:
        quick = results[QUICKSTART]
        print(f"utilization at the quickstart settings: {quick['flops'] / quick['seconds'] / peak:.0%} of the measured "
              "bf16 peak")

if __name__ == "__main__":
    main()
