#!/usr/bin/env bash
# The GPU check in one go (about 8 minutes on one H100/H200-class GPU; see benchmarks/gpu_check.py):
#   bash benchmarks/gpu_check.sh --out results/gpu          # then copy results/gpu/summary.md into benchmarks/README.md
#   bash benchmarks/gpu_check.sh --tiny --out /tmp/tiny     # CPU dry run of the same code (the tests run it)
# Uses the Python that holds torch: $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
