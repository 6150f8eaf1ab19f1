"""Step 4: combine located items into long trajectories and the four kinds of short trajectories, with stats.

    python data_creation/combine_data.py --input_file work/located.jsonl \\
        --long_output data/train_long.jsonl --short_output data/train_short.jsonl --tokenizer embedded

Records: {id, dataset_name, type, instruction, input, output} (JSONL, or one JSON list for a .json path). Items
whose trajectory would not validate are left out and listed. The stats report (counts per dataset and type, relevant
ratio, token length percentiles) goes to --stats_output (default: <long_output>.stats.json).
"""
from __future__ import annotations

import argparse
import json

from smart.data.combine import combine, load_tokenizer, trajectory_stats
from smart.data.teacher import cli_errors
from smart.io import read_records, write_json, write_records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help="located items (step 3)")
    p.add_argument("--long_output", required=True, help="long trajectories, .jsonl or .json")
    p.add_argument("--short_output", required=True, help="short trajectories, .jsonl or .json")
    p.add_argument("--stats_output", default=None, help="stats report JSON (default: <long_output>.stats.json)")
    p.add_argument("--tokenizer", default="none",
                   help="tokenizer for the length percentiles: a path or hub name, 'embedded' for SmolLM2, 'none'")
    p.add_argument("--missed_facts", action="store_true",
                   help="add to the long output, per open question answered beyond passage 1's first sentence, a "
                        "missed-fact record: the chain with that first sentence located alone in the prompt, the "
                        "answer as the target (type generator_after_chain)")
    p.add_argument("--restate_request", action="store_true",
                   help="end an open question's retrieval block with the question restated (`Request: ...`), so "
                        "that the Fact Locator and the Response Generator read it close by; claims and "
                        "multiple-choice requests are not restated; a model trained on it gets it at inference too "
                        "(the quickstart's RESTATE_REQUEST=1)")
    args = p.parse_args(argv)
    with cli_errors():
        items, longs, shorts, rejected = combine(read_records(args.input_file), args.missed_facts, args.restate_request)
        write_records(args.long_output, longs)
        write_records(args.short_output, shorts)
        stats = trajectory_stats(items, longs + shorts, load_tokenizer(args.tokenizer))
        stats["rejected"] = {k: len(v) for k, v in rejected.items()}
        stats["rejected_ids"] = {k: v[:50] for k, v in rejected.items()}
        write_json(args.stats_output or args.long_output + ".stats.json", stats)
        print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
