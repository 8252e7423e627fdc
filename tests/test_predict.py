"""``hoi predict`` on images no annotation lists: a small run trained on features of a
seeded random backbone, then predict rebuilds that backbone from the checkpoint's provenance.
Its rows equal ``hoi test``'s on the same images (the same maps, the same heads), drawings are
written, and a backbone that cannot be rebuilt is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data_prep.detect import main as detect_main
from data_prep.extract import main as extract_main
from hoi.cli import main as hoi_main
from hoi.data import hico_metadata
from hoi.evaluation import HOIResults

from .photos import make_photo_split
from .test_bad_input import one_error
from .test_vsgnet_synth import TINY_MODEL, run_overrides

REPO = Path(__file__).resolve().parents[1]
ARCH = "resnet50"
SPLIT = "train2015"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(image folder, data root, best.pth) of 2 epochs on 4 photos, features of resnet50
    with random weights (seed 7) at 64x64, ground-truth boxes as detections."""
    root = tmp_path_factory.mktemp("hico")
    images, anno = make_photo_split(root, n=4, max_side=96)
    anno = anno.rename(root / f"instances_{SPLIT}.json")
    cache = root / "cache"
    assert detect_main(["--source", "gt", "--anno", str(anno), "--out",
                        str(cache / f"detections_{SPLIT}.h5")]) == 0
    assert extract_main(["--images", str(images), "--anno", str(anno), "--backbone", ARCH,
                         "--weights", "none",
                         "--seed", "7", "--input-size", "64", "64", "--workers", "0", "--device",
                         "cpu",
                         "--out", str(cache / ARCH / f"features_{SPLIT}.h5")]) == 0
    out = root / "run"
    overrides = [o for o in run_overrides(root, out,
                                          **{"optim.epochs": 2, "data.train_split": SPLIT})
                 if not o.startswith("model.in_channels")] + [f"arch={ARCH}",
                                                              "model.in_channels=1024"]
    assert hoi_main(["train", "--config", str(REPO / "configs/hico/base.yaml"), *overrides]) == 0
    assert TINY_MODEL  # the heads are the tiny test heads, on the real 1024 channels
    return images, root, out / "best.pth"


def test_predict_equals_hoi_test_on_the_same_images(trained, tmp_path) -> None:
    images, root, ckpt = trained
    out = tmp_path / "pred"
    dets = root / "cache" / f"detections_{SPLIT}.h5"
    assert hoi_main(["predict", "--checkpoint", str(ckpt), "--images", str(images), "--detections",
                     str(dets),
                     "--out", str(out), "--top-k", "3", "--score-thresh", "0"]) == 0
    pred = json.loads((out / "predictions.json").read_text())
    assert [Path(r["file"]).name
            for r in pred["images"]] == sorted(p.name for p in images.iterdir())
    results = tmp_path / "test.npz"
    assert hoi_main(["test", "--checkpoint", str(ckpt), "--split", SPLIT, "--out",
                     str(results)]) == 0
    ref = HOIResults.load(results)
    meta = hico_metadata()
    for i, record in enumerate(pred["images"]):
        assert (record["width"], record["height"]) == tuple(json.loads(
            (root / f"instances_{SPLIT}.json").read_text())["size"][i])
        rows = np.flatnonzero(ref.image_index == i)
        best = rows[np.argsort(-ref.score[rows], kind="stable")][:3]
        assert len(record["hois"]) == len(best) == 3
        for got, r in zip(record["hois"], best):
            assert got["hoi"] == int(ref.hoi[r])
            assert got["score"] == pytest.approx(float(ref.score[r]), rel=1e-5)
            assert got["human_box"] == ref.boxes_h[r].tolist()
            assert got["object_box"] == ref.boxes_o[r].tolist()
            assert got["verb"] == meta.verbs[meta.hoi_verb[got["hoi"]]]
            assert got["object"] == meta.objects[int(ref.object[r])]
        assert (out / f"{Path(record['file']).stem}_hoi.png").stat().st_size > 5000


def test_predict_with_detectron2_on_single_files(trained, tmp_path) -> None:
    from .test_detect import CONFIG, make_anchor_weights

    images, _, ckpt = trained
    weights = make_anchor_weights(tmp_path / "anchors_person.pth")
    files = sorted(images.iterdir())[:2]
    out = tmp_path / "pred"
    assert hoi_main(["predict", "--checkpoint", str(ckpt), "--images", *map(str, files), "--out",
                     str(out),
                     "--detector-config", CONFIG, "--detector-weights", str(weights),
                     "--detector-min-size", "128",
                     "--detector-max-size", "160", "--detector-max-per-image", "8",
                     "--score-thresh", "0"]) == 0
    pred = json.loads((out / "predictions.json").read_text())
    assert pred["detections"] == "detectron2" and len(pred["images"]) == 2
    for record in pred["images"]:  # every box of these weights is a person: person-person HOIs only
        assert record["hois"] and all(h["object"] == "person" for h in record["hois"])
        for h in record["hois"]:
            x1, y1, x2, y2 = h["human_box"]
            assert 1 <= x1 <= x2 <= record["width"] and 1 <= y1 <= y2 <= record["height"]


def test_backbone_that_cannot_be_rebuilt_is_refused(trained, tmp_path, capsys) -> None:
    images, _, ckpt = trained
    saved = torch.load(ckpt, weights_only=True)
    prov = json.loads(saved["provenance"])
    prov["features"].update(weights="/nowhere/sac_resnet50.pth", weights_sha256="ab" * 32)
    saved["provenance"] = json.dumps(prov)
    other = tmp_path / "other.pth"
    torch.save(saved, other)
    out = tmp_path / "pred"
    assert hoi_main(["predict", "--checkpoint", str(other), "--images", str(images), "--out",
                     str(out)]) == 2
    line = one_error(capsys.readouterr().err, other, "/nowhere/sac_resnet50.pth")
    assert "--backbone-weights" in line and not (out / "predictions.json").exists()
    wrong = tmp_path / "wrong.pth"
    shutil.copyfile(ckpt, wrong)  # any file whose sha256 is not the recorded one
    assert hoi_main(["predict", "--checkpoint", str(other), "--images", str(images), "--out",
                     str(out),
                     "--backbone-weights", str(wrong)]) == 2
    assert "is not the abababababab" in one_error(capsys.readouterr().err, wrong)
