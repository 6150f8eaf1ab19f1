"""Can the Response Generator learn to verify a claim against the fact the locator found? Three answer forms for the
demo's PubHealth-like claims, each trained the same way and scored on held-out dev claims (dev articles, dev
phrasing, the evidence sentence given as the located fact):
  label          the verdict alone ("false"), as the paper's PubHealth answers
  fact_value     the fact's value, then the verdict ("mathematician: false")
  claim_vs_fact  the claim's span, the fact's, then the verdict ("Claim: samurai | Fact: mathematician |
                 Verdict: false"): the demo's form, smart.trajectory.render_verdict

Accuracy reads each answer as evaluation does (smart.evaluation.metrics.parse_true_false: the verdict word it writes);
"by comparison" reads a claim-vs-fact answer by whether its two spans agree (smart.evaluation.metrics.compared_verdict, a
diagnostic) and any other answer by its verdict word.

Each variant: LoRA (rank 16, lr 1e-3 linear, batch 4, one epoch) on the generator step of `--pairs` true/false claim
pairs from the embedded corpus, then greedy decoding with transformers. Prints accuracy, how often each answered
`true` (a constant answer scores the dev set's label share), and the difference to `label` in the same run.

    python bench/bench_verdict.py                   # 150 pairs (75 steps per variant; ~10 min each in float32 on 2 cores)
    python bench/bench_verdict.py --pairs 40 --dev 40 --precision bf16
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from smart import defaults
from smart.data import demo_data as D
from smart.evaluation.metrics import compared_verdict, parse_true_false
from smart.inference.backends import HFBackend
from smart.io import write_jsonl
from smart.retrieval.passages import PassageStore
from smart.training.trainer import TrainArgs, train
from smart.trajectory import EOG, GENERATOR_TYPE, Fact, Passage, Trajectory, format_prompt, short_trajectories

ANSWER_FORMS = {"label": lambda item: item["golds"][0],
                "fact_value": lambda item: f"{item['fact_value']}: {item['golds'][0]}",
                "claim_vs_fact": lambda item: item["output"]}


def generator_record(item: dict, rel: D.Relation, others: list[D.Relation], variant: str) -> dict:
    """The generator step of a claim located over its evidence passage (first) and two other articles' passages."""
    label = item["golds"][0]
    passages = [Passage(r.title, r.evidence) for r in [rel, *others]]
    facts = [Fact(1, True, rel.title, rel.evidence)] + [Fact(i, False) for i in range(2, len(passages) + 1)]
    answer = ANSWER_FORMS[variant](item)
    t = Trajectory([D.query_of(rel)], passages, facts, answer, [1])
    record = next(r for r in short_trajectories(item["instruction"], item["input"], t) if r["type"] == GENERATOR_TYPE)
    return {**record, "label": label}


def claim_records(rels: list[D.Relation], pools: dict, n: int, rng: random.Random, split: str, variant: str,
                  pairs: bool) -> list[dict]:
    """`n` generator records of claims on `rels` (true/false pairs in training, one claim per fact for dev)."""
    out: list[dict] = []
    for rel in rels:
        if len(out) >= n:
            break
        truths = (True, False) if pairs else (rng.random() < 0.5,)
        others = rng.sample([r for r in rels if r.title != rel.title], 2)
        out += [generator_record(item, rel, others, variant)
                for item in D.make_claims(rel, pools[rel.kind], rng, split, truths)]
    return out[:n]


def run_variant(variant: str, train_rels, dev_rels, pools, args, work: Path) -> dict:
    records = claim_records(train_rels, pools, 2 * args.pairs, random.Random(0), "train", variant, pairs=True)
    dev = claim_records(dev_rels, pools, args.dev, random.Random(1), "dev", variant, pairs=False)
    random.Random(2).shuffle(records)
    write_jsonl(work / f"{variant}.jsonl", [{k: r[k] for k in ("type", "instruction", "input", "output")} for r in records])
    start = time.time()
    adapter = train(TrainArgs(
        train_file=str(work / f"{variant}.jsonl"), output_dir=str(work / variant), use_lora=True, lora_rank=16,
        lora_alpha=32, lora_dropout=0.0, learning_rate=1e-3, warmup_ratio=0.03, num_train_epochs=1,
        per_device_train_batch_size=4, mixed_precision=args.precision, max_seq_length=1024))
    train_s = time.time() - start
    backend = HFBackend(str(defaults.llm_dir()), lora_path=str(adapter), dtype="auto", batch_size=16)
    answers = backend.generate([format_prompt(r["instruction"], r["input"]) for r in dev], 24, stop=[EOG])
    backend.close()
    labels = [parse_true_false(a) for a in answers]
    compared = [compared_verdict(a) or label for a, label in zip(answers, labels)]
    return {"variant": variant, "train": len(records), "dev": len(dev), "train_s": train_s,
            "accuracy": 100 * sum(p == r["label"] for p, r in zip(labels, dev)) / len(dev),
            "compared_accuracy": 100 * sum(c == r["label"] for c, r in zip(compared, dev)) / len(dev),
            "answered_true": sum(p == "true" for p in labels), "unparsed": sum(p is None for p in labels),
            "dev_true": sum(r["label"] == "true" for r in dev), "example": answers[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=150, help="true/false claim pairs to train on")
    parser.add_argument("--dev", type=int, default=100, help="dev claims to score")
    parser.add_argument("--precision", choices=("no", "bf16"), default="bf16" if defaults.cpu_supports_bf16() else "no")
    parser.add_argument("--variants", nargs="+", choices=ANSWER_FORMS, default=list(ANSWER_FORMS))
    args = parser.parse_args()

    store = PassageStore(str(defaults.passages_tsv()))
    relations = D.extract_relations(store, D.article_topics(None))
    picked = D.sample_relations(relations, random.Random(0))
    dev_rels, train_rels = picked[:2 * args.dev], picked[2 * args.dev:]  # disjoint articles
    pools = D.pools_of(relations)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_variant(v, train_rels, dev_rels, pools, args, Path(tmp)) for v in args.variants]
    base = next((r for r in results if r["variant"] == "label"), results[0])
    print(f"\n{args.pairs} training pairs, precision {args.precision}; dev: {base['dev']} claims, "
          f"{base['dev_true']} of them true")
    print("| answer form | accuracy % | by comparison % | answered true | unparsed | vs label (points) | train s "
          "| first dev answer |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['variant']} | {r['accuracy']:.1f} | {r['compared_accuracy']:.1f} | {r['answered_true']} | {r['unparsed']} | "
              f"{r['accuracy'] - base['accuracy']:+.1f} | {r['train_s']:.0f} | {r['example'].strip()!r} |")


if __name__ == "__main__":
    main()
