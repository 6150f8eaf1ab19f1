#!/usr/bin/env bash
# SMART and the baselines on PubHealth (accuracy); prints the paper's table with the published SMART number.
#   PUBHEALTH_FILE=path/to/health_claims_processed.jsonl SMART_MODEL=out/smart BASE_MODEL=meta-llama/Llama-2-7b-hf bash scripts/eval_pubhealth.sh
# More variables (METHODS, OUT_DIR, EVAL_ARGS): scripts/eval_common.sh.
source "$(dirname "$0")/eval_common.sh"
run_dataset pubhealth "${PUBHEALTH_FILE:-eval_data/health_claims_processed.jsonl}"
