#!/usr/bin/env python
"""Merge a LoRA adapter (from multi_agent/finetune.py --use_lora) into its base model; save model + tokenizer.

    python merge_lora.py --base-model-path BASE --lora-path runs/short --target-model-path runs/short_merged
    python merge_lora.py --base BASE --lora runs/short --target runs/short_merged     (same flags, short names)

The base is resized to the adapter's vocabulary (special tokens), the merged logits are checked against the
adapter's on a probe input before anything is written, and a base whose vocabulary does not match is refused.
"""
from __future__ import annotations

import argparse
import logging

from smart.defaults import EMBEDDED
from smart.io import exit_on_input_error
from smart.training.trainer import merge_lora


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-model-path", "--base", dest="base", default=EMBEDDED,
                   help="the model the adapter was trained on ('embedded' = the embedded SmolLM2, default)")
    p.add_argument("--lora-path", "--lora", dest="lora", required=True, help="adapter folder (adapter_config.json, tokenizer)")
    p.add_argument("--target-model-path", "--target", dest="target", required=True, help="where the merged model goes")
    p.add_argument("--probe", default=None, help="text whose logits must agree before and after merging")
    args = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    with exit_on_input_error():
        diff = merge_lora(args.base, args.lora, args.target, args.probe)
    print(f"merged model and tokenizer saved to {args.target} (max |logit difference| to the adapter: {diff:.2e})")


if __name__ == "__main__":
    main()
