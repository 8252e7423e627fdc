#!/usr/bin/env bash
# The first thing to run on a GPU machine (not yet timed on a GPU): every GPU-dependent piece
# of the pipeline once, each check pass/fail/skip with its figure. See scripts/gpu_check.py.
#
#   bash scripts/gpu_check.sh [--quick] [--device cuda|cpu] [--out DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${HOI_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
