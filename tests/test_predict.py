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


def test_given_detections_of_a_resized_copy_are_refused(trained, tmp_path, capsys) -> None:
    """--detections made for the originals, --images holding a half-size copy of one of them:
    refused in one line naming that image and both sizes, before any work; in a file made
    before detections files recorded image sizes, by the boxes reaching past the image."""
    import h5py
    from PIL import Image

    images, root, ckpt = trained
    old_file = tmp_path / f"detections_{SPLIT}.h5"
    shutil.copyfile(root / "cache" / f"detections_{SPLIT}.h5", old_file)
    with h5py.File(old_file, "r+") as f:
        del f["image_sizes"]
    copies = tmp_path / "copies"
    shutil.copytree(images, copies)
    small = sorted(copies.iterdir())[1]
    with Image.open(small) as img:
        w, h = img.size
        img.resize((w // 2, h // 2)).save(small, quality=90)
    out = tmp_path / "pred"
    assert hoi_main(["predict", "--checkpoint", str(ckpt), "--images", str(copies),
                     "--detections", str(old_file), "--out", str(out)]) == 2
    line = one_error(capsys.readouterr().err, small, f"decoded size {w // 2}x{h // 2}",
                     f"x2={w}", "--detections")
    assert "past the image" in line and not (out / "predictions.json").exists()


def test_detections_recording_other_sizes_are_refused(trained, tmp_path, capsys) -> None:
    """data_prep.detect records each image's size in the detections file; a larger copy of an
    image (whose boxes would all fit) is refused by that size."""
    from PIL import Image

    from hoi.data.cache import ProposalFile

    images, root, ckpt = trained
    dets = root / "cache" / f"detections_{SPLIT}.h5"
    anno = json.loads((root / f"instances_{SPLIT}.json").read_text())
    assert ProposalFile(dets).image_sizes.tolist() == anno["size"]
    copies = tmp_path / "copies"
    shutil.copytree(images, copies)
    big = sorted(copies.iterdir())[2]
    with Image.open(big) as img:
        w, h = img.size
        img.resize((2 * w, 2 * h)).save(big, quality=90)
    out = tmp_path / "pred"
    assert hoi_main(["predict", "--checkpoint", str(ckpt), "--images", str(copies),
                     "--detections", str(dets), "--out", str(out)]) == 2
    one_error(capsys.readouterr().err, big, f"decoded size {2 * w}x{2 * h}",
              f"made for it at {w}x{h}")
    assert not (out / "predictions.json").exists()


def test_allow_mismatch_goes_past_another_backbone_file(trained, tmp_path, capsys) -> None:
    """A backbone file other than the recorded one: refused naming --allow-mismatch; with it,
    predict goes on and records what it accepted."""
    from hoi.models.backbones import create_backbone

    images, _, ckpt = trained
    weights = tmp_path / "resnet50_other.pth"
    torch.save(create_backbone(ARCH).state_dict(), weights)
    saved = torch.load(ckpt, weights_only=True)
    prov = json.loads(saved["provenance"])
    prov["features"].update(weights=str(weights), weights_sha256="cd" * 32, weights_seed=None)
    saved["provenance"] = json.dumps(prov)
    other = tmp_path / "other.pth"
    torch.save(saved, other)
    files = [str(p) for p in sorted(images.iterdir())[:1]]
    dets = str(trained[1] / "cache" / f"detections_{SPLIT}.h5")
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(other), "--images", *files, "--detections", dets,
            "--out", str(out)]
    assert hoi_main(args) == 2
    line = one_error(capsys.readouterr().err, weights, "--allow-mismatch")
    assert "is not the cdcdcdcdcdcd" in line
    assert hoi_main([*args, "--allow-mismatch"]) == 0
    pred = json.loads((out / "predictions.json").read_text())
    assert any("cdcdcdcdcdcd" in m for m in pred["accepted_mismatches"])


def test_predict_and_test_into_outputs_another_run_writes_are_refused(trained, tmp_path,
                                                                      capsys) -> None:
    """Another process holds predict's --out folder, and test's --out file
    (hoi/engine/run_lock.py): one line naming it and the holder's pid; nothing written."""
    from .test_run_lock import Holder

    images, root, ckpt = trained
    out, results = tmp_path / "pred", tmp_path / "results.npz"
    holders = [Holder(out), Holder(results, folder=False)]
    try:
        assert hoi_main(["predict", "--checkpoint", str(ckpt), "--images", str(images),
                         "--detections", str(root / "cache" / f"detections_{SPLIT}.h5"),
                         "--out", str(out)]) == 2
        line = one_error(capsys.readouterr().err, out, f"pid {holders[0].pid}")
        assert "another run writes into this folder" in line
        assert hoi_main(["test", "--checkpoint", str(ckpt), "--split", SPLIT, "--out",
                         str(results)]) == 2
        line = one_error(capsys.readouterr().err, results, f"pid {holders[1].pid}")
        assert "another run writes this file" in line
        assert not (out / "predictions.json").exists() and not results.exists()
    finally:
        for holder in holders:
            holder.kill()


# ------------------------------------------------------------- provenance: one flag goes past all
def test_allow_mismatch_alone_goes_past_a_backbone_mismatch_in_hoi_train(tmp_path,
                                                                          capsys) -> None:
    """Features of another backbone: refused naming --allow-mismatch; --allow-mismatch alone
    goes on (no data.check_backbone=false needed) and records it; the deprecated
    data.check_backbone=false still loads and goes on, with a warning."""
    from .test_vsgnet_synth import make_split

    root = tmp_path / "data"
    make_split(root, "train2015", 6, arch="resnet50")  # the run's backbone is sac_resnet50
    feats = root / "cache" / "resnet50" / "features_train2015.h5"

    def train(out: str, *extra: str) -> int:
        return hoi_main(["train", "--config", str(REPO / "configs/hico/base.yaml"),
                         *run_overrides(root, tmp_path / out, **{"optim.epochs": 1}),
                         f"data.features={feats}", *extra])

    assert train("refused") == 2
    line = one_error(capsys.readouterr().err, feats, "another backbone", "--allow-mismatch")
    assert "attention.type: features 'none', this run 'sac'" in line
    assert train("allowed", "--allow-mismatch") == 0
    ckpt = torch.load(tmp_path / "allowed" / "checkpoint.pth", weights_only=True)
    accepted = json.loads(ckpt["provenance"])["accepted_mismatches"]
    assert len(accepted) == 1 and "another backbone" in accepted[0]
    assert train("legacy", "data.check_backbone=false") == 0
    assert "data.check_backbone=false is deprecated" in capsys.readouterr().err
