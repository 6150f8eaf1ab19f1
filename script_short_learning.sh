#!/usr/bin/env bash
# Stage 1 of long-short trajectory learning: train on SHORT trajectories (one agent step each), then merge the
# LoRA adapter into the base model: ${OUTPUT_DIR}/merged, the starting point of stage 2 (script_long_learning.sh).
#
# Paper settings by default: LoRA, lr 2e-4, linear decay, 3% warmup, 2 epochs, total batch 128, max length 3076.
# Every setting is an environment variable; extra arguments go to multi_agent/finetune.py, e.g.
#   TRAIN_FILE=data/demo/train_short.jsonl TOTAL_BATCH_SIZE=8 bash script_short_learning.sh --max_train_steps 20
#   MODEL=meta-llama/Llama-2-7b-hf TRAIN_FILE=/dataset/short_trajectory_data.json bash script_short_learning.sh
# GPUs are detected (NUM_GPUS to override): several -> `accelerate launch` with ACCELERATE_CONFIG (DeepSpeed
# ZeRO-3 by default; multi_agent/configs/ also has ZeRO-2 and FSDP); none -> one CPU process.
set -euo pipefail
cd "$(dirname "$0")"

: "${PYTHON:=$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
: "${MODEL:=embedded}"                           # HF name or folder; 'embedded' = SmolLM2-135M-Instruct
: "${TRAIN_FILE:=data/demo/train_short.jsonl}"
: "${OUTPUT_DIR:=runs/SMART_Short}"
: "${MERGED_DIR:=${OUTPUT_DIR%/}/merged}"        # merged model (USE_LORA=1 and MERGE=1)
: "${MAX_SEQ_LENGTH:=3076}"
: "${TOTAL_BATCH_SIZE:=128}"
: "${BATCH_SIZE_PER_GPU:=1}"                     # examples per micro-batch per process (packed into one row)
: "${LEARNING_RATE:=2e-4}"
: "${LR_SCHEDULER:=linear}"
: "${WARMUP_RATIO:=0.03}"
: "${NUM_EPOCHS:=2}"
: "${MAX_STEPS:=0}"                              # > 0: stop after this many optimizer steps
: "${MAX_TRAIN_SAMPLES:=0}"                      # > 0: use only the first N records
: "${USE_LORA:=1}"                               # 0 = full fine-tuning
: "${USE_SPECIAL_TOKENS:=1}"                     # 0 = the markers stay plain text (split into sub-word pieces)
: "${CHAT_PROMPT:=0}"                            # 1 = request in the chat template's user turn, trajectory in the assistant's
: "${LORA_RANK:=64}"
: "${LORA_ALPHA:=16}"
: "${LORA_DROPOUT:=0.1}"
: "${MERGE:=1}"
: "${SEED:=42}"
: "${NUM_GPUS:=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')}"
: "${ACCELERATE_CONFIG:=multi_agent/configs/deepspeed_zero3.yaml}"
# bf16 | fp16 | no; default bf16 on GPUs and on CPUs with bf16 matrix instructions (AVX512-BF16/AMX), else no
: "${PRECISION:=$([ "$NUM_GPUS" -gt 0 ] && echo bf16 || "$PYTHON" -c \
  'from smart.defaults import cpu_supports_bf16; print("bf16" if cpu_supports_bf16() else "no")')}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false

PROCESSES=$(( NUM_GPUS > 0 ? NUM_GPUS : 1 ))
GRADIENT_ACC_STEPS=$(( TOTAL_BATCH_SIZE / PROCESSES / BATCH_SIZE_PER_GPU ))
GRADIENT_ACC_STEPS=$(( GRADIENT_ACC_STEPS > 0 ? GRADIENT_ACC_STEPS : 1 ))
echo "Training ${MODEL} on ${TRAIN_FILE}: ${PROCESSES} process(es) (${NUM_GPUS} GPUs), ${BATCH_SIZE_PER_GPU} per process," \
     "${GRADIENT_ACC_STEPS} accumulation steps -> ${OUTPUT_DIR}"

ARGS=(--model_name_or_path "$MODEL" --tokenizer_name "$MODEL" --use_slow_tokenizer --train_file "$TRAIN_FILE"
      --max_seq_length "$MAX_SEQ_LENGTH" --per_device_train_batch_size "$BATCH_SIZE_PER_GPU"
      --gradient_accumulation_steps "$GRADIENT_ACC_STEPS" --learning_rate "$LEARNING_RATE"
      --lr_scheduler_type "$LR_SCHEDULER" --warmup_ratio "$WARMUP_RATIO" --weight_decay 0.
      --num_train_epochs "$NUM_EPOCHS" --output_dir "$OUTPUT_DIR" --with_tracking --report_to tensorboard
      --logging_steps 1 --seed "$SEED")
[ "$USE_SPECIAL_TOKENS" = 1 ] && ARGS+=(--use_special_tokens)
[ "$CHAT_PROMPT" = 1 ] && ARGS+=(--chat_prompt)
[ "$USE_LORA" = 1 ] && ARGS+=(--use_lora --lora_rank "$LORA_RANK" --lora_alpha "$LORA_ALPHA" --lora_dropout "$LORA_DROPOUT")
[ "$PRECISION" != no ] && ARGS+=("--$PRECISION")
[ "$MAX_STEPS" -gt 0 ] && ARGS+=(--max_train_steps "$MAX_STEPS")
[ "$MAX_TRAIN_SAMPLES" -gt 0 ] && ARGS+=(--max_train_samples "$MAX_TRAIN_SAMPLES")

if [ "$NUM_GPUS" -gt 0 ]; then
  "$PYTHON" -m accelerate.commands.launch --config_file "$ACCELERATE_CONFIG" --num_machines 1 \
    --num_processes "$NUM_GPUS" --mixed_precision "$PRECISION" multi_agent/finetune.py "${ARGS[@]}" "$@"
else
  "$PYTHON" multi_agent/finetune.py "${ARGS[@]}" "$@"
fi

if [ "$USE_LORA" = 1 ] && [ "$MERGE" = 1 ]; then
  "$PYTHON" merge_lora.py --base-model-path "$MODEL" --lora-path "$OUTPUT_DIR" --target-model-path "$MERGED_DIR"
fi
