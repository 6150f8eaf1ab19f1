#!/usr/bin/env bash
# The main job on the embedded defaults: prepare -> embed -> real questions (dev split, training sample) -> dev
# retrieval -> trajectories (data_creation/create_data.sh, answer-guided teacher) -> stage 1 (short) -> stage 2 (long)
# -> evaluate SMART vs baselines -> report. Every stage is cached; rerun to resume. README "The quickstart, stage by
# stage" lists every variable; the main ones:
#   QUICK=1          small preset (N_TRAIN=64 N_DEV=50 LR_SCHEDULER=constant)
#   N_TRAIN, N_DEV   real training items / dev questions per dev task (default 200 / 200)
#   MIX              training shares per shape (default open=0.6,claim=0.2,choice=0.2)
#   MODEL_ANSWERS    1 (default): the backbone writes the open questions' training answers (create_data.sh's answer
#                    step); 0: the gold answers
#   MISSED_FACTS     0 (default) or 1: the long file gains missed-fact records (the generator answers from the
#                    passages after a wrong located fact; combine_data.py --missed_facts)
#   RESTATE_REQUEST  0 (default: the paper's format) or 1: an open question's retrieval block ends with the question
#                    restated (combine_data.py --restate_request)
#   DEMO_DATA        real (default) or templates (the template builder's items and dev sets; SPAN_FACTS applies)
#   STAGE1_EPOCHS, STAGE2_EPOCHS (default 1 each; the paper: 2), MAX_STEPS (0 = no cap)
#   TOTAL_BATCH_SIZE (stage 1, default 4), STAGE2_BATCH_SIZE (default 2), LEARNING_RATE (default 1e-3,
#                    linear decay after 3% warmup; LR_SCHEDULER to change), LORA_RANK (16), LORA_DROPOUT (0)
#   USE_SPECIAL_TOKENS  0 (default: the trajectory markers stay plain text) or 1 (nine new tokens, as the paper)
#   CHAT_PROMPT      0 (default) or 1 (the request in the backbone's chat template, the trajectory as its reply)
#   PRECISION        bf16 (default where the CPU has bf16 matrix instructions: train under autocast, evaluate in
#                    bfloat16) or no (float32 throughout)
#   MAX_ARTICLES     use the passages of only this many articles (0 = the whole ~12k-passage corpus)
#   NO_VLLM=1        evaluate with transformers instead of vLLM (and do not install vLLM)
#   MAX_NEW_TOKENS, MAX_LOCATOR_TOKENS  generator / Fact Locator token limits at evaluation (64 / 160)
#   RUN_DIR          where runs go (default runs/quickstart); SMART_DATA: prepared data (default data/)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NO_VLLM:-0}" = "1" ]; then
  echo "NO_VLLM=1: evaluating with the transformers backend (vLLM neither installed nor used)"
fi
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
exec ./.venv/bin/python scripts/quickstart.py "$@"
