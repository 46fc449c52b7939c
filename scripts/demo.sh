#!/usr/bin/env bash
# Install, then score the bundled demo data (200 real Alpaca records) with the embedded model
# (SmolLM2-135M-Instruct) and keep the best 20%. Extra arguments go to `selectit run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
selectit run examples/alpaca_demo.json --out runs/demo "$@"
