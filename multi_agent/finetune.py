#!/usr/bin/env python
"""Fine-tune a causal LM on SMART trajectories (stage 1: short, stage 2: long); a thin CLI over smart.training.trainer.

Single CPU process:  python multi_agent/finetune.py --train_file data/demo/train_short.jsonl --output_dir runs/short --use_lora --use_special_tokens
Several GPUs:        accelerate launch --config_file multi_agent/configs/deepspeed_zero2.yaml --num_processes 8 multi_agent/finetune.py ...
The paper's flags (script_*_learning.sh) work unchanged.
"""
from __future__ import annotations

import argparse
import logging

from smart.io import exit_on_input_error
from smart.training.trainer import LOG_FILE, TrainArgs, train


def parse_args(argv: list[str] | None = None) -> TrainArgs:
    d = TrainArgs
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--model_name_or_path", default=d.model_name_or_path,
                   help="HF model folder or hub name; 'embedded' = the embedded SmolLM2-135M-Instruct (default)")
    g.add_argument("--tokenizer_name", default=None, help="tokenizer folder if not the model's")
    g.add_argument("--use_slow_tokenizer", action="store_true",
                   help="accepted for the paper's scripts; transformers 5 loads the fast tokenizer either way")
    g.add_argument("--train_file", required=True, help="trajectory JSONL or JSON list of {instruction, input, output, ...}")
    g.add_argument("--max_seq_length", type=int, default=d.max_seq_length,
                   help="tokens per example (prompt + target); longer ones are cut at the end, passages stay masked")
    g.add_argument("--max_train_samples", type=int, default=None, help="use only the first N records")
    g.add_argument("--preprocessing_num_workers", type=int, default=None, help="accepted for the paper's scripts (unused)")
    g.add_argument("--use_special_tokens", action="store_true",
                   help="add the trajectory special tokens (</eoi> <retrieval> ... </eog>) and train their embeddings")
    g.add_argument("--chat_prompt", action="store_true",
                   help="render the request as the user turn of the model's chat template and train the trajectory "
                        "as its assistant turn (recorded with the model; evaluation then prompts the same way)")
    g.add_argument("--no_packing", dest="packing", action="store_false",
                   help="pad each micro-batch to its longest example instead of packing (slower; for comparison)")
    g = p.add_argument_group("optimization")
    g.add_argument("--per_device_train_batch_size", type=int, default=d.per_device_train_batch_size,
                   help="examples per micro-batch per process (packed into one row)")
    g.add_argument("--gradient_accumulation_steps", type=int, default=d.gradient_accumulation_steps)
    g.add_argument("--learning_rate", type=float, default=d.learning_rate)
    g.add_argument("--lr_scheduler_type", default=d.lr_scheduler_type,
                   choices=["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"])
    g.add_argument("--warmup_ratio", type=float, default=d.warmup_ratio, help="share of optimizer steps for warmup")
    g.add_argument("--weight_decay", type=float, default=d.weight_decay)
    g.add_argument("--num_train_epochs", type=int, default=d.num_train_epochs)
    g.add_argument("--max_train_steps", "--max_steps", dest="max_train_steps", type=int, default=None,
                   help="stop after this many optimizer steps (overrides --num_train_epochs)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--gradient_checkpointing", action="store_true", help="recompute activations to save memory")
    precision = g.add_mutually_exclusive_group()
    precision.add_argument("--bf16", dest="mixed_precision", action="store_const", const="bf16",
                           help="bf16 mixed precision: float32 weights under bf16 autocast (GPU, or a CPU with bf16 "
                                "instructions), a frozen LoRA base loaded in bf16; the model/adapter records bfloat16")
    precision.add_argument("--fp16", dest="mixed_precision", action="store_const", const="fp16",
                           help="fp16 mixed precision (GPU); the model/adapter records float16")
    g.add_argument("--use_flash_attn", dest="attn_implementation", action="store_const", const="flash_attention_2",
                   help="flash-attention 2 (GPU, needs flash-attn); packing uses it as variable-length attention")
    g = p.add_argument_group("LoRA")
    g.add_argument("--use_lora", action="store_true", help="train a LoRA adapter instead of all weights")
    g.add_argument("--lora_rank", type=int, default=d.lora_rank)
    g.add_argument("--lora_alpha", type=float, default=d.lora_alpha)
    g.add_argument("--lora_dropout", type=float, default=d.lora_dropout)
    g.add_argument("--lora_target_modules", default=d.lora_target_modules,
                   help="'all-linear' or comma-separated module names (e.g. q_proj,v_proj)")
    g = p.add_argument_group("output, logging, checkpoints")
    g.add_argument("--output_dir", required=True, help=f"final model/adapter + tokenizer, checkpoints, {LOG_FILE}")
    g.add_argument("--with_tracking", action="store_true", help="log curves with --report_to (TensorBoard under output_dir)")
    g.add_argument("--report_to", default=d.report_to, help="tensorboard (default), wandb, all, ...")
    g.add_argument("--logging_steps", type=int, default=d.logging_steps, help=f"log every N optimizer steps (also to {LOG_FILE})")
    g.add_argument("--checkpointing_steps", default=None,
                   help="save output_dir/step_N every N optimizer steps, or 'epoch' (state + loadable model/adapter)")
    g.add_argument("--resume_from_checkpoint", default=None,
                   help="a step_N folder, or 'latest' (newest under output_dir; starts fresh when there is none)")
    p.set_defaults(mixed_precision="no")
    args = p.parse_args(argv)
    if args.checkpointing_steps not in (None, "epoch") and not args.checkpointing_steps.isdigit():
        p.error("--checkpointing_steps must be a number of steps or 'epoch'")
    targets = args.lora_target_modules
    fields = {k: v for k, v in vars(args).items() if k not in ("use_slow_tokenizer", "preprocessing_num_workers")}
    fields["lora_target_modules"] = targets if targets == "all-linear" else targets.split(",")
    return TrainArgs(**fields)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    with exit_on_input_error():
        train(args)


if __name__ == "__main__":
    main()
