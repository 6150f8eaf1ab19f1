#!/usr/bin/env bash
# SMART and its backbone on the hand-written questions (eval/handwritten/), after the quickstart: see
# scripts/eval_handwritten.py. Same environment variables and RUN_DIR as scripts/quickstart.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec ./.venv/bin/python scripts/eval_handwritten.py "$@"
