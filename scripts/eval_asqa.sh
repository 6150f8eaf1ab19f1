#!/usr/bin/env bash
# SMART and the baselines on ASQA (str-em, ROUGE-L); prints the paper's table with the published SMART number.
#   ASQA_FILE=path/to/asqa_eval_gtr_top100.json SMART_MODEL=out/smart BASE_MODEL=meta-llama/Llama-2-7b-hf bash scripts/eval_asqa.sh
# More variables (METHODS, OUT_DIR, EVAL_ARGS): scripts/eval_common.sh.
source "$(dirname "$0")/eval_common.sh"
run_dataset asqa "${ASQA_FILE:-eval_data/asqa_eval_gtr_top100.json}"
