#!/usr/bin/env bash
# Frozen-backbone features (layer3, 400x400 input) for one split, sharded over NGPU GPUs.
#   bash scripts/extract.sh NGPU SPLIT BACKBONE WEIGHTS [extra data_prep.extract options]
#   bash scripts/extract.sh 4 train2015 sac_resnet50 checkpoints/sac_resnet50_backbone.pth
# BACKBONE: an arch name (sac_resnet50, gc_resnet101, ...) or configs/backbones/*.yaml.
# Writes $OUT/<backbone>/features_SPLIT.h5 (DATA default data/hicodet, OUT default $DATA/cache).
# Defaults per rank: batch 64 on CUDA (8 on CPU), (cores / ranks of the machine) - 1 decoding
# workers, 4 batches queued for the writer thread; override with --batch-size, --workers,
# --write-queue. Progress: the bar plus a line every --log-every seconds (60).
set -euo pipefail
usage="usage: extract.sh NGPU SPLIT BACKBONE WEIGHTS [options]"
NGPU=${1:?$usage}; SPLIT=${2:?$usage}; BACKBONE=${3:?$usage}; WEIGHTS=${4:?$usage}; shift 4
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${DATA:-$ROOT/data/hicodet}; OUT=${OUT:-$DATA/cache}
NAME=$(basename "$BACKBONE" .yaml)
mkdir -p "$OUT/$NAME"
exec "${HOI_VENV:-$ROOT/.venv}/bin/python" -m hoi.engine.torchrun --nproc_per_node "$NGPU" --nnodes "${NNODES:-1}" \
  --node_rank "${NODE_RANK:-0}" --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29512}" \
  -m data_prep.extract --images "$DATA/images/$SPLIT" --anno "$DATA/instances_$SPLIT.json" \
  --backbone "$BACKBONE" --weights "$WEIGHTS" --out "$OUT/$NAME/features_$SPLIT.h5" "$@"
