#!/usr/bin/env bash
# SMART and the baselines on PopQA (long-tail subset, match); prints the paper's table with the published SMART number.
#   POPQA_FILE=path/to/popqa_longtail_w_gs.jsonl SMART_MODEL=out/smart BASE_MODEL=meta-llama/Llama-2-7b-hf bash scripts/eval_popqa.sh
# More variables (METHODS, OUT_DIR, EVAL_ARGS): scripts/eval_common.sh.
source "$(dirname "$0")/eval_common.sh"
run_dataset popqa "${POPQA_FILE:-eval_data/popqa_longtail_w_gs.jsonl}"
