#!/usr/bin/env bash
# The main job on the embedded defaults: prepare -> embed -> index/retrieve -> demo trajectories -> stage 1 (short)
# -> stage 2 (long) -> evaluate SMART vs baselines -> report. Every stage is cached; rerun to resume.
#
# Sizes (environment variables; on 2 CPU cores with bf16 matrix instructions the defaults take 25-29 minutes once
# .venv exists, 21 once data/ holds the corpus embeddings; on 2 cores without them, in float32, about 48; QUICK=1 is
# the short path):
#   QUICK=1          small preset (N_TRAIN=64 N_DEV=20 MAX_ARTICLES=2000 LR_SCHEDULER=constant)
#   N_TRAIN, N_DEV   demo training items / dev questions per dev task (default 200 / 50)
#   STAGE1_EPOCHS, STAGE2_EPOCHS (default 1 each; the paper: 2), MAX_STEPS (0 = no cap)
#   TOTAL_BATCH_SIZE (stage 1, default 4), STAGE2_BATCH_SIZE (default 2), LEARNING_RATE (default 1e-3,
#                    linear decay after 3% warmup; LR_SCHEDULER to change), LORA_RANK (16), LORA_DROPOUT (0: on CPU its random masks took a quarter
#                    of each step)
#   USE_SPECIAL_TOKENS  0 (default: the trajectory markers stay plain text, measured better at this scale) or 1 (add
#                    them as nine new tokens, as the paper does)
#   SPAN_FACTS       questions on any sentence's names, years and counts, N per 13 relation facts, in training and
#                    dev (default 6, about one fact in three; 0: relation facts only)
#   PRECISION        bf16 (default where the CPU has bf16 matrix instructions: train under autocast, evaluate in
#                    bfloat16) or no (float32 throughout)
#   MAX_ARTICLES     use the passages of only this many articles (0 = the whole ~12k-passage corpus)
#   NO_VLLM=1        evaluate with transformers instead of vLLM (and do not install vLLM)
#   MAX_NEW_TOKENS, MAX_LOCATOR_TOKENS  generator / Fact Locator token limits at evaluation (48 / 160)
#   RUN_DIR          where runs go (default runs/quickstart); SMART_DATA: prepared data (default data/)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NO_VLLM:-0}" = "1" ]; then
  echo "NO_VLLM=1: evaluating with the transformers backend (vLLM neither installed nor used)"
fi
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec ./.venv/bin/python scripts/quickstart.py "$@"
