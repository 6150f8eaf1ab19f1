#!/usr/bin/env bash
# Build SMART trajectory data from one dataset file: convert -> intent -> retrieval -> fact locating -> [answers] ->
# combine -> validate.
#
#   OPENAI_BASE_URL=... OPENAI_API_KEY=... bash data_creation/create_data.sh nq_train.jsonl nq out/nq
#   TEACHER=hf MODEL=embedded bash data_creation/create_data.sh ...   # offline, local teacher (SmolLM2)
#   TEACHER=answer bash data_creation/create_data.sh ...               # offline, answer-guided (no model)
#
# Every teacher step is resumable: rerun the same command after an interruption. Environment knobs: TEACHER
# (openai|hf|vllm|answer), MODEL, CONCURRENCY, MAX_QUERIES, N_DOCS, N (sample size), PASSAGES, EMBEDDINGS, ENCODER,
# TOKENIZER (length stats), ANSWER_TEACHER (openai|hf|vllm: a model writes the open questions' answers,
# data_creation/write_answers.py; unset: the gold answers), ANSWER_MODEL (default embedded), ANSWER_CONCURRENCY,
# MISSED_FACTS (1: combine_data.py --missed_facts), RESTATE_REQUEST (1: combine_data.py --restate_request).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 INPUT_FILE DATASET_NAME OUTPUT_DIR" >&2
  exit 2
fi
INPUT=$1; NAME=$2; OUT=$3
TEACHER=${TEACHER:-openai}; MODEL=${MODEL:-gpt-3.5-turbo-0125}; CONCURRENCY=${CONCURRENCY:-8}
MAX_QUERIES=${MAX_QUERIES:-3}; N_DOCS=${N_DOCS:-3}
PASSAGES=${PASSAGES:-embedded}; ENCODER=${ENCODER:-embedded}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p "$OUT/work"
teacher=(--teacher "$TEACHER" --model_name "$MODEL" --concurrency "$CONCURRENCY")

$PY data_creation/convert_data.py --input_file "$INPUT" --dataset_name "$NAME" --output_file "$OUT/work/items.jsonl" \
  ${N:+--n "$N"}
$PY data_creation/reconstruct_intent.py --input_file "$OUT/work/items.jsonl" --output_file "$OUT/work/intent.jsonl" \
  --max_queries "$MAX_QUERIES" "${teacher[@]}"
$PY multi_agent/passage_retrieval.py --model_name_or_path "$ENCODER" --passages "$PASSAGES" \
  ${EMBEDDINGS:+--passages_embeddings "$EMBEDDINGS"} --data "$OUT/work/intent.jsonl" \
  --output_dir "$OUT/work/retrieved" --n_docs "$N_DOCS"
$PY data_creation/locate_facts.py --input_file "$OUT/work/retrieved/intent.jsonl" --output_file "$OUT/work/located.jsonl" \
  "${teacher[@]}"
LOCATED=$OUT/work/located.jsonl
if [ -n "${ANSWER_TEACHER:-}" ]; then  # optional: a chat model writes the open questions' answers
  $PY data_creation/write_answers.py --input_file "$LOCATED" --output_file "$OUT/work/answered.jsonl" \
    --teacher "$ANSWER_TEACHER" --model_name "${ANSWER_MODEL:-embedded}" --concurrency "${ANSWER_CONCURRENCY:-64}"
  LOCATED=$OUT/work/answered.jsonl
fi
$PY data_creation/combine_data.py --input_file "$LOCATED" --long_output "$OUT/${NAME}_long.jsonl" \
  --short_output "$OUT/${NAME}_short.jsonl" --stats_output "$OUT/${NAME}_stats.json" --tokenizer "${TOKENIZER:-none}" \
  $([ "${MISSED_FACTS:-0}" = 1 ] && echo --missed_facts) $([ "${RESTATE_REQUEST:-0}" = 1 ] && echo --restate_request)
$PY data_creation/validate_data.py "$OUT/${NAME}_long.jsonl" "$OUT/${NAME}_short.jsonl"
