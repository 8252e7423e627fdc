#!/usr/bin/env bash
# Train the VSGNet heads on NGPU processes (torchrun; NGPU=1 runs one process, CPU works too).
#   scripts/train.sh NGPU CONFIG [key=value ...] [--resume]
# e.g. scripts/train.sh 4 configs/hico/vsgnet_sac_resnet50.yaml data.root=/data/hicodet
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 NGPU CONFIG [key=value ...] [--resume]" >&2
  exit 2
fi
ngpu=$1; config=$2; shift 2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON="${HOI_VENV:-$ROOT/.venv}/bin/python"
[[ -x "$PYTHON" ]] || PYTHON=python3
# torchrun (torch.distributed.run) through hoi.engine.torchrun: a user error is one line, not one per rank
TORCHRUN=("$PYTHON" -m hoi.engine.torchrun)
# Several machines: NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) as torchrun expects them.
if [[ -n "${NNODES:-}" && "${NNODES}" != 1 ]]; then
  exec "${TORCHRUN[@]}" --nnodes "$NNODES" --node_rank "${NODE_RANK:?set NODE_RANK}" \
    --master_addr "${MASTER_ADDR:?set MASTER_ADDR}" --master_port "${MASTER_PORT:-29513}" \
    --nproc_per_node="$ngpu" -m hoi train --config "$config" "$@"
fi
exec "${TORCHRUN[@]}" --standalone --nproc_per_node="$ngpu" -m hoi train --config "$config" "$@"
