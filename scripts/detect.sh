#!/usr/bin/env bash
# Detections for one HICO-DET split with Detectron2 Faster R-CNN, sharded over NGPU GPUs.
#   bash scripts/detect.sh NGPU SPLIT [extra data_prep.detect options]
#   bash scripts/detect.sh 4 test2015 --weights /path/to/model_final_f6e8b1.pkl
# Paths: DATA=<dir with images/ and instances_*.json> (default data/hicodet), OUT (default $DATA/cache).
# Multi-machine: run the same command on every machine with NNODES, NODE_RANK, MASTER_ADDR set.
# Defaults per rank: batch 8 on CUDA (2 on CPU), (cores / ranks of the machine) - 1 decoding
# workers, 4 batches queued for the writer thread (--batch-size, --workers, --write-queue).
set -euo pipefail
NGPU=${1:?usage: detect.sh NGPU SPLIT [options]}; SPLIT=${2:?usage: detect.sh NGPU SPLIT [options]}; shift 2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${DATA:-$ROOT/data/hicodet}; OUT=${OUT:-$DATA/cache}
mkdir -p "$OUT"
exec "${HOI_VENV:-$ROOT/.venv}/bin/python" -m hoi.engine.torchrun --nproc_per_node "$NGPU" --nnodes "${NNODES:-1}" \
  --node_rank "${NODE_RANK:-0}" --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29511}" \
  -m data_prep.detect --images "$DATA/images/$SPLIT" --anno "$DATA/instances_$SPLIT.json" \
  --out "$OUT/detections_$SPLIT.h5" "$@"
