#!/usr/bin/env bash
# One of the paper's tables, end to end: bash scripts/paper_table.sh table2|table3|table4 [--render_only]
# Demo scale on the embedded defaults (the quickstart's environment variables and RUN_DIR; its finished stages are
# reused), or the paper's recipe with PAPER=1 (MODEL, TRAIN_SHORT, TRAIN_LONG, EVAL_DIR). See scripts/paper_tables.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec ./.venv/bin/python scripts/paper_tables.py "$@"
