"""The synthetic mini HICO-DET: official raw layout, round trip through the converter,
determinism, real label space, rare classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.convert import main as convert_main
from data_prep.synth import TEMPLATES
from data_prep.synth import main as synth_main
from hoi.data import hico_metadata, validate_annotations
from hoi.data.anno_mat import read_anno_bbox_mat, read_list_action


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert synth_main(["--out", str(out), "--train", "60", "--test", "20", "--seed", "5"]) == 0
    assert convert_main(["--mat", str(out / "anno_bbox.mat"), "--anno-mat", str(out / "anno.mat"),
                         "--out", str(out / "anno")]) == 0
    return out


def test_official_layout(synth) -> None:
    train = sorted((synth / "images" / "train2015").glob("*.jpg"))
    test = sorted((synth / "images" / "test2015").glob("*.jpg"))
    assert len(train) == 60 and len(test) == 20
    assert train[0].name == "HICO_train2015_00000001.jpg"
    assert test[-1].name == "HICO_test2015_00000020.jpg"
    records = read_anno_bbox_mat(synth / "anno_bbox.mat")
    assert len(records["train"]) == 60 and len(records["test"]) == 20
    assert len(read_list_action(synth / "anno.mat")) == 600


def test_round_trip_through_the_converter(synth) -> None:
    meta = hico_metadata()
    for split, n in (("train2015", 60), ("test2015", 20)):
        data = json.loads((synth / "anno" / f"instances_{split}.json").read_text())
        assert len(data["filenames"]) == n
        assert validate_annotations(data) == []
        assert len(data["empty"]) <= n // 10  # a few pictures without pairs, as in HICO-DET
        for name, (w, h), anno in zip(data["filenames"], data["size"], data["annotation"]):
            with Image.open(synth / "images" / split / name) as img:
                assert img.size == (w, h)
            for hoi, obj, verb in zip(anno["hoi"], anno["object"], anno["verb"]):
                assert meta.pair_to_hoi[obj, verb] == hoi
    train = json.loads((synth / "anno" / "instances_train2015.json").read_text())
    counts = np.bincount([h for a in train["annotation"] for h in a["hoi"]], minlength=600)
    present = np.flatnonzero(counts)
    allowed = {int(meta.pair_to_hoi[meta.objects.index(t.obj), meta.verbs.index(v)])
               for t in TEMPLATES for v in t.verbs}
    assert set(present.tolist()) <= allowed and len(present) >= 15
    rare = set(train["rare"])
    # both splits occur
    assert any(c in rare for c in present) and any(c not in rare for c in present)
    assert all((counts[c] < 10) == (c in rare) for c in present)


def test_deterministic_for_a_seed(synth, tmp_path) -> None:
    assert synth_main(["--out", str(tmp_path), "--train", "3", "--test", "1", "--seed", "5"]) == 0
    for name in ("HICO_train2015_00000001.jpg", "HICO_train2015_00000003.jpg"):
        a = np.asarray(Image.open(tmp_path / "images" / "train2015" / name))
        b = np.asarray(Image.open(synth / "images" / "train2015" / name))
        assert np.array_equal(a, b)
    other = tmp_path / "other"
    assert synth_main(["--out", str(other), "--train", "1", "--test", "1", "--seed", "6"]) == 0
    first = "HICO_train2015_00000001.jpg"
    img_a = np.asarray(Image.open(other / "images" / "train2015" / first))
    img_b = np.asarray(Image.open(tmp_path / "images" / "train2015" / first))
    assert img_a.shape != img_b.shape or not np.array_equal(img_a, img_b)
