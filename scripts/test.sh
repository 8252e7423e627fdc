#!/usr/bin/env bash
# The README's test command: install what is missing (scripts/install.sh, idempotent),
# lint with ruff (the rules of pyproject.toml), then run the whole pytest suite on CPU.
# Extra arguments go to pytest.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -k sac -x       # a subset
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${HOI_VENV:-$ROOT/.venv}
bash "$ROOT/scripts/install.sh"
cd "$ROOT"
echo "[test] ruff check ."
"$VENV/bin/ruff" check .
# Idle OpenMP threads spin on small shared machines: one thread per process in tests.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "$VENV/bin/python" -m pytest "$@"
