#!/usr/bin/env bash
# Stage 2 of long-short trajectory learning: train on LONG trajectories (the whole agent chain), starting from
# stage 1's merged model, then merge the adapter. The final model is ${OUTPUT_DIR}/merged (runs/SMART/merged).
#
# Paper settings by default: LoRA, lr 2e-4, linear decay, 3% warmup, 2 epochs, total batch 128, max length 2816.
# Same environment variables and pass-through arguments as script_short_learning.sh (which this runs), e.g.
#   MODEL=runs/SMART_Short/merged TRAIN_FILE=data/demo/train_long.jsonl bash script_long_learning.sh
set -euo pipefail
cd "$(dirname "$0")"
export MODEL="${MODEL:-runs/SMART_Short/merged}"
export TRAIN_FILE="${TRAIN_FILE:-data/demo/train_long.jsonl}"
export OUTPUT_DIR="${OUTPUT_DIR:-runs/SMART}"
export MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-2816}"
exec bash script_short_learning.sh "$@"
