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
exec torchrun --standalone --nproc_per_node="$ngpu" -m hoi train --config "$config" "$@"
