"""Projected V100-hours of the paper's COCO rows (Tables V-VII, Sec. IV-A recipe): a
**projection** from Detectron2's published training speeds, not a measurement.

    python scripts/coco_cost.py

Basis: Detectron2's MODEL_ZOO.md, train time in s/iter on 8 V100s at 16 images per iteration
(R50-FPN 1x rows; R-101 from the 3x rows' R101/R50 ratio, the same schedule-independent speed);
GPU-seconds per image = s/iter x 8 / 16; times the 12 epochs' 1,407,192 training images
(175,899 iterations of 8 images, configs/coco/sec4a.yaml). Cascade R-CNN without masks: Cascade
Mask R-CNN less the mask head's share (Mask - Faster R-CNN). Attention rows: x the FPS ratio of
the paper's Mask R-CNN R-50 rows (Table VII: 9.9 FPS baseline, 9.6 GC / CBAM, 9.7 SE, 9.4 SAC).
"""

from __future__ import annotations

import sys

# MODEL_ZOO.md: s/iter (8 V100, 16 images/iter)
S_PER_ITER_R50 = {"faster_rcnn": 0.210, "mask_rcnn": 0.261, "retinanet": 0.200,
                  "cascade_mask_rcnn": 0.317}
S_PER_ITER_R50["cascade_rcnn"] = (S_PER_ITER_R50["cascade_mask_rcnn"]
                                  - (S_PER_ITER_R50["mask_rcnn"] - S_PER_ITER_R50["faster_rcnn"]))
# R101 / R50 from the 3x rows: Faster 0.286 / 0.209, Mask 0.340 / 0.261, RetinaNet 0.280 / 0.201
R101_FACTOR = {"faster_rcnn": 0.286 / 0.209, "mask_rcnn": 0.340 / 0.261,
               "retinanet": 0.280 / 0.201}
R101_FACTOR["cascade_rcnn"] = R101_FACTOR["faster_rcnn"]
R101_FACTOR["cascade_mask_rcnn"] = R101_FACTOR["mask_rcnn"]
ZOO_GPUS, ZOO_IMAGES_PER_ITER = 8, 16
TRAIN_IMAGES = 175899 * 8  # 12 epochs of COCO train2017's 117,266 images with annotations
PAPER_FPS = {"none": 9.9, "gc": 9.6, "se": 9.7, "cbam": 9.6, "sac": 9.4}  # Table VII


def v100_hours(detector: str, depth: int = 50, block: str = "none") -> float:
    """Projected V100-hours of one row."""
    seconds_per_image = S_PER_ITER_R50[detector] * ZOO_GPUS / ZOO_IMAGES_PER_ITER
    if depth == 101:
        seconds_per_image *= R101_FACTOR[detector]
    seconds_per_image *= PAPER_FPS["none"] / PAPER_FPS[block]
    return seconds_per_image * TRAIN_IMAGES / 3600


def main() -> int:
    print("| detector | R-50 | R-50 + GC | R-50 + SAC | R-101 | R-101 + GC | R-101 + SAC |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for det in ("faster_rcnn", "mask_rcnn", "cascade_rcnn", "cascade_mask_rcnn", "retinanet"):
        cells = [v100_hours(det, d, b) for d in (50, 101) for b in ("none", "gc", "sac")]
        print(f"| {det} | " + " | ".join(f"{h:.0f}" for h in cells) + " |")
    tables = sum(v100_hours(det, d, b)
                 for det in ("faster_rcnn", "mask_rcnn", "cascade_rcnn", "cascade_mask_rcnn",
                             "retinanet")
                 for d in (50, 101) for b in ("none", "gc", "sac"))
    tables += v100_hours("mask_rcnn", 50, "se") + v100_hours("mask_rcnn", 50, "cbam")
    table_i = 9 * v100_hours("mask_rcnn", 50, "sac")  # l = 1 ... 512 besides l = 32
    print(f"\nTables V-VII (32 rows): {tables:,.0f} V100-hours; Table I's 9 other ratios: "
          f"{table_i:,.0f}; one Mask R-CNN R-50 row on the paper's 4 GPUs: "
          f"{v100_hours('mask_rcnn') / 4:.1f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
