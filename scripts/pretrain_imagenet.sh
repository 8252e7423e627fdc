#!/usr/bin/env bash
# ImageNet pretraining of a backbone on NGPU GPUs of this machine (or of each of several
# machines), through torchrun. Everything after CONFIG goes to `hoi pretrain`: key=value
# overrides and --resume.
#
#   bash scripts/pretrain_imagenet.sh 4 configs/imagenet/sac_resnet50.yaml data.root=/data/imagenet
#   bash scripts/pretrain_imagenet.sh 4 configs/imagenet/sac_resnet50.yaml data.root=/data/imagenet --resume
#   bash scripts/pretrain_imagenet.sh 8 configs/imagenet/sac_resnet50_finetune.yaml \
#        data.root=/data/imagenet init_weights=/weights/resnet50-0676ba61.pth
#
# Several machines: run the same line on each with NNODES, NODE_RANK (0..NNODES-1),
# MASTER_ADDR (the address of node 0) and optionally MASTER_PORT set, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash scripts/pretrain_imagenet.sh 8 CONFIG ...
# The total batch (optim.batch_size, 256 by default) is shared by all NNODES x NGPU processes.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
NGPU=$1
CONFIG=$2
shift 2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${HOI_VENV:-$ROOT/.venv}
PYTHON=$VENV/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
NNODES=${NNODES:-1}
# each process gets its own data-loader workers; torchrun would otherwise leave OMP at 1 thread
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

if [ "$NNODES" -gt 1 ]; then
  : "${NODE_RANK:?set NODE_RANK (0..NNODES-1) on every machine}"
  : "${MASTER_ADDR:?set MASTER_ADDR to the address of the machine with NODE_RANK=0}"
  LAUNCH=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR"
          --master_port "${MASTER_PORT:-29500}")
else
  LAUNCH=(--standalone)
fi

cd "$ROOT"
exec "$PYTHON" -m hoi.engine.torchrun "${LAUNCH[@]}" --nproc_per_node "$NGPU" \
  -m hoi pretrain --config "$CONFIG" "$@"
