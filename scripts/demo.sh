#!/usr/bin/env bash
# The main job on the built-in synthetic dataset: installs what is missing, then runs the
# whole pipeline (synthesise -> convert -> pretrain backbones -> detect -> extract -> train
# -> test -> eval -> pictures) for a plain and a SAC ResNet-50 and writes
# outputs/demo/report.md. Resumable: a rerun skips the finished steps (--fresh starts over).
#   bash scripts/demo.sh [--fresh] [--out DIR] [--detector-weights FILE]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/install.sh"
cd "$ROOT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
exec "${HOI_VENV:-$ROOT/.venv}/bin/python" scripts/demo.py "$@"
