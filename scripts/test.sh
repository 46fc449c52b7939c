#!/usr/bin/env bash
# Install, then run the whole test suite (including the few tests on the embedded model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"
