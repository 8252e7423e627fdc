#!/usr/bin/env bash
# HOI detections of a checkpoint on a split, then the official HICO-DET mAP.
#   scripts/eval.sh CKPT [--split test2015] [--anno FILE] [other hoi test flags / key=value ...]
# Writes <run dir>/results_<split>.npz and <run dir>/eval_<split>.json.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 CKPT [--split SPLIT] [--anno FILE] [hoi test flags / key=value ...]" >&2
  exit 2
fi
ckpt=$1; shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="${HOI_VENV:-$ROOT/.venv}/bin/python"
[[ -x "$PY" ]] || PY=python
split=test2015; anno=""; rest=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --split) split=$2; shift 2 ;;
    --anno) anno=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
dir=$(dirname "$ckpt")
out="$dir/results_${split}.npz"
test_args=(--checkpoint "$ckpt" --split "$split" --out "$out")
[[ -n "$anno" ]] && test_args+=(--anno "$anno")
"$PY" -m hoi test "${test_args[@]}" "${rest[@]}"
if [[ -z "$anno" ]]; then
  # the annotation file the checkpoint's config names for this split
  anno=$("$PY" - "$ckpt" "$split" <<'PY'
import sys, torch
from hoi.config import build_config
from hoi.hoi_config import HOITrainConfig, data_path
cfg = build_config(HOITrainConfig, base=torch.load(sys.argv[1], weights_only=True)["config"])
print(data_path(cfg.data, "annotations", sys.argv[2], cfg.arch))
PY
)
fi
"$PY" -m hoi eval --anno "$anno" --detections "$out" --json "$dir/eval_${split}.json"
