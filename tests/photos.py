"""A tiny HICO-DET-like split made of real photos shipped with scikit-image, for the tests of
the detection and feature stages: JPEG files plus an annotation file in the schema of
docs/architecture.md#annotation-files (boxes 1-based inclusive)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from hoi.data import build_instances, hico_metadata

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def make_photo_split(root: Path, n: int = 6, max_side: int = 160) -> tuple[Path, Path]:
    """Write ``n`` images (photos cycled, flipped to differ) and ``instances.json`` under root.

    Every image gets one GT pair: a 'person' box on the left half and a 'hold cup' style object
    box on the right half. Returns (image folder, annotation file).
    """
    import skimage.data

    meta = hico_metadata()
    hold = meta.verbs.index("hold")
    cup = meta.objects.index("cup")
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    filenames, sizes, pairs = [], [], []
    for i in range(n):
        photo = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()
        img = Image.fromarray(photo if i % 2 == 0 else photo[:, ::-1].copy())
        img.thumbnail((max_side, max_side))
        name = f"HICO_test2015_{i + 1:08d}.jpg"
        img.save(images / name, quality=90)
        w, h = img.size
        filenames.append(name)
        sizes.append([w, h])
        pairs.append({
            "boxes_h": [[1.0, 1.0, float(w // 2), float(h)]],
            "boxes_o": [[float(w // 2 + 1), float(h // 4), float(w), float(h - h // 4)]],
            "hoi": [int(meta.pair_to_hoi[cup, hold])],
            "object": [cup],
            "verb": [hold],
        })
    anno = root / "instances_test2015.json"
    anno.write_text(json.dumps(build_instances(filenames, sizes, pairs)))
    return images, anno


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


