#!/usr/bin/env bash
# Full-scale rehearsal without images: every stage at HICO-DET's real image and pair counts,
# with its cost (DIR/costs.json, DIR/costs.md). See scripts/rehearse_full_scale.py.
#
#   bash scripts/rehearse_full_scale.sh --out DIR [--fraction 1.0] [--channels 64] [--iters 40]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${HOI_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$PY" "$ROOT/scripts/rehearse_full_scale.py" "$@"
