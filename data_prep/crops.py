"""Object crops in ImageFolder layout, to pretrain a backbone on a detection dataset's boxes.

    python -m data_prep.crops --images DIR --anno instances_train2015.json --out DIR \
        [--size 64] [--margin 0.1] [--val-fraction 0.2] [--min-per-class 4] [--seed 0]

Every distinct ground-truth box (humans as ``person``, objects with their class) is cut out
with a margin, resized to ``--size`` x ``--size`` and saved as
``OUT/{train,val}/<object name>/<image stem>_<k>.jpg``. Within each class a seeded
``--val-fraction`` of the crops goes to ``val``; classes with fewer than ``--min-per-class``
crops are left out (and listed). The demo uses it to pretrain the SAC-ResNet and the plain
ResNet with the ImageNet training code (``hoi pretrain``) on the synthetic pictures.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hoi.data.annotations import load_annotations
from hoi.data.cache import gt_proposals
from hoi.data.images import check_image_dir, load_rgb
from hoi.data.metadata import hico_metadata


def make_crops(images: Path, anno_path: Path, out: Path, size: int = 64, margin: float = 0.1,
               val_fraction: float = 0.2, min_per_class: int = 4, seed: int = 0) -> dict[str, int]:
    """Write the crops; return the number of crops per class kept."""
    anno = load_annotations(anno_path)
    check_image_dir(images, anno["filenames"], str(anno_path))
    names = hico_metadata().objects
    crops: dict[str, list[tuple[int, int, np.ndarray]]] = defaultdict(list)
    for i, _filename in enumerate(anno["filenames"]):
        det = gt_proposals(anno["annotation"][i])
        for k, (box, label) in enumerate(zip(det.boxes, det.labels)):
            crops[names[label]].append((i, k, box))
    rng = np.random.default_rng(seed)
    kept, dropped = {}, []
    for cls, items in sorted(crops.items()):
        if len(items) < min_per_class:
            dropped.append(f"{cls} ({len(items)})")
            continue
        order = rng.permutation(len(items))
        n_val = max(1, int(round(val_fraction * len(items))))
        for rank, j in enumerate(order):
            i, k, box = items[j]
            split = "val" if rank < n_val else "train"
            image = load_rgb(images / anno["filenames"][i])
            w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
            x1, y1 = box[0] - 1 - margin * w, box[1] - 1 - margin * h
            x2, y2 = box[2] + margin * w, box[3] + margin * h
            crop = image.crop((max(0, x1), max(0, y1), min(image.width, x2), min(image.height, y2)))
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            crop.resize((size, size),
                        Image.BILINEAR).save(folder / f"{Path(anno['filenames'][i]).stem}_{k}.jpg",
                                             quality=92)
        kept[cls] = len(items)
    if dropped:
        print(f"[crops] classes with fewer than {min_per_class} crops left out: "
              f"{', '.join(dropped)}", flush=True)
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.crops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True)
    p.add_argument("--anno", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--margin", type=float, default=0.1)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--min-per-class", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    kept = make_crops(Path(args.images), Path(args.anno), Path(args.out), args.size, args.margin,
                      args.val_fraction, args.min_per_class, args.seed)
    print(f"[crops] {sum(kept.values())} crops of {len(kept)} classes -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
