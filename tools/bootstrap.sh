#!/usr/bin/env bash
# First-use set-up: a virtual environment with CPU torch, edgevit and its toolchains. Idempotent and quick when
# nothing changed (a stamp newer than pyproject.toml skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EDGEVIT_VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.edgevit-installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  exit 0
fi
echo "edgevit: setting up $VENV on first use (torch, onnxruntime, executorch, coremltools; a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip's find-links on this kind of machine points at warnings-only index folders; keep the log readable.
quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; return "${PIPESTATUS[0]}"; }
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # Never let a bare `torch` requirement pull a multi-GB CUDA build: use a local CPU wheel when pip's
  # find-links offer one, else PyTorch's CPU index.
  if quiet "${PIP[@]}" install -q --dry-run --no-index --no-deps "torch==2.13.0"; then
    echo "edgevit: installing torch 2.13.0 (local CPU wheel)" >&2
    quiet "${PIP[@]}" install -q "torch==2.13.0"
  else
    echo "edgevit: installing torch 2.13.0 (CPU build from download.pytorch.org)" >&2
    quiet "${PIP[@]}" install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple
  fi
fi
echo "edgevit: installing edgevit[dev,litert,tensorrt-onnx,scale,coreai] and its toolchains" >&2
# litert (pulls jax), tensorrt-onnx (NVIDIA ModelOpt on the CPU), scale (Ray) and coreai (Apple's Core AI converter
# and runtime) are optional extras for users; the test suite runs the LiteRT interpreter, ModelOpt, a local Ray and
# the Core AI runtime for real, so they are here
quiet "${PIP[@]}" install -q -e ".[dev,litert,tensorrt-onnx,scale,coreai]"
touch "$STAMP"
echo "edgevit: ready ($VENV)" >&2
