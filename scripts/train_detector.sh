#!/usr/bin/env bash
# Train (or --eval-only) a COCO detector with an attention backbone on NGPU processes (torchrun).
#   scripts/train_detector.sh NGPU --detector NAME --arch ARCH [hoi train-detector options] [KEY VALUE ...]
# e.g. scripts/train_detector.sh 4 --detector mask_rcnn --arch sac_resnet50 \
#        --backbone-weights checkpoints/resnet50.pth --output runs/coco/mask_rcnn_sac_resnet50
# Add --resume to continue a killed run from OUTPUT_DIR/last_checkpoint.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 NGPU --detector NAME --arch ARCH [options] [KEY VALUE ...]" >&2
  exit 2
fi
ngpu=$1; shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON="${HOI_VENV:-$ROOT/.venv}/bin/python"
[[ -x "$PYTHON" ]] || PYTHON=python3
TORCHRUN=("$PYTHON" -m hoi.engine.torchrun)
if [[ -n "${NNODES:-}" && "${NNODES}" != 1 ]]; then
  exec "${TORCHRUN[@]}" --nnodes "$NNODES" --node_rank "${NODE_RANK:?set NODE_RANK}" \
    --master_addr "${MASTER_ADDR:?set MASTER_ADDR}" --master_port "${MASTER_PORT:-29514}" \
    --nproc_per_node="$ngpu" -m hoi train-detector "$@"
fi
exec "${TORCHRUN[@]}" --standalone --nproc_per_node="$ngpu" -m hoi train-detector "$@"
