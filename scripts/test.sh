#!/usr/bin/env bash
# Install (with the test tools, the bench extra (trl, peft) and llama-cpp-python, which builds llama.cpp: ~5 min on 2 cores the first
# time), then run the whole test suite (including the few tests on the embedded model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,llamacpp,columnar,ray,bench,zstd,dedup,proxy
. .venv/bin/activate
python -m pytest -q "$@"
