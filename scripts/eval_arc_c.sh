#!/usr/bin/env bash
# SMART and the baselines on ARC-Challenge (accuracy); prints the paper's table with the published SMART number.
#   ARC_FILE=path/to/arc_challenge_processed.jsonl SMART_MODEL=out/smart BASE_MODEL=meta-llama/Llama-2-7b-hf bash scripts/eval_arc_c.sh
# More variables (METHODS, OUT_DIR, EVAL_ARGS): scripts/eval_common.sh.
source "$(dirname "$0")/eval_common.sh"
run_dataset arc_c "${ARC_FILE:-eval_data/arc_challenge_processed.jsonl}"
