#!/usr/bin/env bash
# The paper's Table XI on HICO-DET: VSGNet with ResNet-50/101, each plain / +GC / +SAC.
# For each of the six: extract features (frozen ImageNet-pretrained backbone), train the heads,
# test, evaluate; then write the table beside the paper's numbers.
#
#   NGPU=4 DATA=/data/hicodet WEIGHTS=/path/to/backbones bash scripts/reproduce_table_xi.sh
#
# Expects: $DATA/images/{train2015,test2015}, $DATA/instances_{train2015,test2015}.json
# (python -m data_prep.convert), $DATA/cache/detections_{split}.h5 (scripts/detect.sh), and
# ImageNet-pretrained backbones $WEIGHTS/<arch>.pth for every arch (hoi export-backbone, or
# torchvision's own resnet50-0676ba61.pth / resnet101-63fe2227.pth copied to that name; see
# docs/pretraining.md). Before any extraction, every backbone must have its file and all must
# share one pretraining recipe (python -m hoi.pretrain.recipe); otherwise the script stops in one
# line naming the backbones and their recipes. ALLOW_MIXED_PRETRAINING=1 goes on anyway, and the
# table then says under it which recipe each row used.
# ARCHS="resnet50 sac_resnet50" limits the runs; EXTRA="optim.epochs=2" passes overrides to
# every training run (e.g. a smoke test). Every step resumes where a killed run stopped.
#
# Disk: a row's features take 57 GiB (1024x25x25 float16, train + test), so rows run one at a
# time and a row's cache is deleted once it is evaluated (KEEP_CACHES=1 keeps them). The cache
# folder is CACHE (default: $OUT if set, else $DATA/cache), e.g. CACHE=/dev/shm/hoi on a machine
# whose RAM holds a row. Before the first row, scripts/table_xi_plan.py prints each row's disk
# need and stops in one line if one cannot fit. Extraction uses WORKERS decode processes
# (default: cores - 1). A row already evaluated is skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NGPU=${NGPU:-1}
DATA=${DATA:-$ROOT/data/hicodet}
WEIGHTS=${WEIGHTS:-$ROOT/checkpoints}
RUNS=${RUNS:-$ROOT/runs/hico}
ARCHS=${ARCHS:-"resnet50 gc_resnet50 sac_resnet50 resnet101 gc_resnet101 sac_resnet101"}
EXTRACT_ARGS=${EXTRACT_ARGS:-}
EXTRA=${EXTRA:-}
PY="${HOI_VENV:-$ROOT/.venv}/bin/python"
CACHE=${CACHE:-${OUT:-$DATA/cache}}
KEEP_CACHES=${KEEP_CACHES:-0}
WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}
export DATA OUT="$CACHE"  # extract.sh writes $OUT/<arch>/features_<split>.h5

# one pretraining recipe per table, checked before anything is extracted or written
mixed=()
[[ "${ALLOW_MIXED_PRETRAINING:-0}" == 1 ]] && mixed=(--allow-mixed)
# shellcheck disable=SC2086
"$PY" -m hoi.pretrain.recipe --weights "$WEIGHTS" "${mixed[@]}" --out "$RUNS/pretraining_recipes.json" $ARCHS

# the disk plan: every row must fit (alone, unless KEEP_CACHES=1) before anything is extracted
keep=()
[[ "$KEEP_CACHES" == 1 ]] && keep=(--keep-caches)
# shellcheck disable=SC2086
"$PY" "$ROOT/scripts/table_xi_plan.py" --data "$DATA" --cache "$CACHE" --runs "$RUNS" \
  --ngpu "$NGPU" "${keep[@]}" $ARCHS

for arch in $ARCHS; do
  run="$RUNS/vsgnet_$arch"
  if [[ -f "$run/eval_test2015.json" ]]; then
    echo "[table-xi] $arch: already evaluated ($run/eval_test2015.json)"
    continue
  fi
  weights="$WEIGHTS/$arch.pth"
  for split in train2015 test2015; do
    # shellcheck disable=SC2086
    bash "$ROOT/scripts/extract.sh" "$NGPU" "$split" "$arch" "$weights" --workers "$WORKERS" \
      $EXTRACT_ARGS
  done
  resume=()
  [[ -f "$run/checkpoint.pth" ]] && resume=(--resume)
  # shellcheck disable=SC2086
  bash "$ROOT/scripts/train.sh" "$NGPU" "$ROOT/configs/hico/vsgnet_$arch.yaml" \
    "data.root=$DATA" "data.features=$CACHE/{arch}/features_{split}.h5" "output_dir=$run" \
    $EXTRA "${resume[@]}"
  bash "$ROOT/scripts/eval.sh" "$run/best.pth"
  if [[ "$KEEP_CACHES" != 1 && -f "$run/eval_test2015.json" ]]; then
    rm -rf "${CACHE:?}/$arch"
    echo "[table-xi] $arch: evaluated; its cache $CACHE/$arch deleted (KEEP_CACHES=1 keeps it)"
  fi
done

"$PY" - "$RUNS" $ARCHS <<'PY'
import json, sys
from pathlib import Path
from hoi.pretrain.recipe import table_note
paper = {"resnet50": (18.34, 12.84, 19.97), "gc_resnet50": (18.68, 13.34, 20.27),
         "sac_resnet50": (19.44, 15.17, 20.72), "resnet101": (19.75, 16.02, 20.87),
         "gc_resnet101": (20.07, 15.82, 21.32), "sac_resnet101": (20.56, 18.01, 21.34)}
runs = Path(sys.argv[1])
lines = ["| backbone | paper Full | paper Rare | paper Non-Rare | ours Full | ours Rare | ours Non-Rare |",
         "|---|---:|---:|---:|---:|---:|---:|"]
for arch in sys.argv[2:]:
    res = json.loads((runs / f"vsgnet_{arch}" / "eval_test2015.json").read_text())["default"]
    ours = [100 * res[k] for k in ("full", "rare", "non_rare")]
    lines.append(f"| {arch} | " + " | ".join(f"{v:.2f}" for v in (*paper[arch], *ours)) + " |")
table = "\n".join(lines)
recipes = json.loads((runs / "pretraining_recipes.json").read_text())
note = table_note({arch: recipes[arch] for arch in sys.argv[2:]})
(runs / "table_xi.md").write_text("# Table XI (HICO-DET, Default setting, mAP %)\n\n" + table + "\n\n" + note + "\n")
print(table + "\n\n" + note)
PY
