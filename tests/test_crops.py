"""data_prep.crops: GT boxes cut out into an ImageFolder tree that the pretraining code reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.crops import main as crops_main
from hoi.pretrain.imagefolder import scan_image_folder

from .photos import make_photo_split


def test_crops_make_an_image_folder(tmp_path: Path) -> None:
    images, anno = make_photo_split(tmp_path, n=5, max_side=120)
    out = tmp_path / "crops"
    assert crops_main(["--images", str(images), "--anno", str(anno), "--out", str(out), "--size",
                       "24",
                       "--min-per-class", "2", "--val-fraction", "0.4"]) == 0
    for split in ("train", "val"):
        assert sorted(p.name for p in (out / split).iterdir()) == ["cup", "person"]
    files = (sorted((out / "train" / "person").glob("*.jpg"))
             + sorted((out / "val" / "person").glob("*.jpg")))
    assert len(files) == 5 and len(list((out / "val" / "person").glob("*.jpg"))) == 2
    with Image.open(files[0]) as img:
        assert img.size == (24, 24)
        assert np.asarray(img).std() > 5  # a piece of a photo, not a blank
    classes, samples = scan_image_folder(out / "train")  # the pretraining code accepts it
    assert classes == ["cup", "person"] and len(samples) == 6
