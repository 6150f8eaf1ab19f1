#!/usr/bin/env bash
# SMART and the baselines on SQuAD 1.1 dev (match); prints the paper's table with the published SMART number.
#   SQUAD_FILE=path/to/squad_dev.jsonl SMART_MODEL=out/smart BASE_MODEL=meta-llama/Llama-2-7b-hf bash scripts/eval_squad.sh
# More variables (METHODS, OUT_DIR, EVAL_ARGS): scripts/eval_common.sh.
source "$(dirname "$0")/eval_common.sh"
run_dataset squad "${SQUAD_FILE:-eval_data/squad_dev.jsonl}"
