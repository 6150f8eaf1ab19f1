# Shared by scripts/eval_<dataset>.sh (source it, then call run_dataset TASK FILE).
# Runs SMART (SMART_MODEL) and the baselines (BASE_MODEL: no retrieval, vanilla RAG, prompted modular agents) on
# one dataset with eval/run_eval.py, then prints the table in the paper's layout beside the published numbers.
# Environment: SMART_MODEL, BASE_MODEL (default: embedded), METHODS (default: all four), OUT_DIR (default:
# results), EVAL_ARGS (extra run_eval.py flags, e.g. "--limit 50 --backend hf --ndocs 3"), PAPER_VERSION (the
# published numbers: aaai, the default, or preprint).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"

run_dataset() {
    local task="$1" input_file="$2"
    local out_dir="${OUT_DIR:-results}" smart_model="${SMART_MODEL:-embedded}" base_model="${BASE_MODEL:-embedded}"
    local metrics=()
    if [ ! -f "$input_file" ]; then
        echo "error: $input_file not found (set the dataset file with the variable named in $0)" >&2
        exit 2
    fi
    for method in ${METHODS:-smart no_retrieval vanilla_rag modular}; do
        local model="$base_model"
        [ "$method" = smart ] && model="$smart_model"
        local tag; tag="$(basename "$model")"
        # shellcheck disable=SC2086
        "$PYTHON" eval/run_eval.py --task "$task" --input_file "$input_file" --model_name "$model" --method "$method" \
            --output_file "$out_dir/${task}_${method}_${tag}.jsonl" --results_table "$out_dir/results.md" ${EVAL_ARGS:-}
        metrics+=("$out_dir/${task}_${method}_${tag}.metrics.json")
    done
    "$PYTHON" eval/make_table.py --paper_version "${PAPER_VERSION:-aaai}" "${metrics[@]}"
}
