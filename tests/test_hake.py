"""data_prep.convert --hake: HAKE's re-release of the training split -> instances_train2015.json."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from data_prep.convert import convert_hake, main
from hoi.data import (
    AnnotationError,
    hico_metadata,
    load_annotations,
    pair_counts,
    validate_annotations,
)
from hoi.data.annotations import UNKNOWN_SIZE
from hoi.data.images import check_image_size


def _label(hoi_id: int, h, o, w=64, ht=48) -> dict:
    return {"hoi_id": hoi_id, "human_bbox": h, "object_bbox": o, "width": w, "height": ht,
            "action_labels": [{"human_part": 0, "partstate": 0}]}


def _hake(tmp_path) -> tuple:
    data = {  # deliberately not in name order
        "HICO_train2015_00000003.jpg": {"dataset": "hico-det",
                                        "labels": [_label(600, [1, 1, 10, 10], [5, 5, 20, 20])]},
        "HICO_train2015_00000001.jpg": {"dataset": "hico-det", "labels": [
            _label(153, [1, 2, 30, 40], [3, 4, 64, 48]), _label(1, [2, 2, 9, 9], [3, 3, 8, 8])]},
        "HICO_train2015_00000002.jpg": {"dataset": "hico-det", "labels": []},
    }
    path = tmp_path / "hake.json"
    path.write_text(json.dumps(data))
    return path, data


def test_small_file_sizes_order_and_unknown(tmp_path, capsys) -> None:
    meta = hico_metadata()
    path, _ = _hake(tmp_path)
    out = load_annotations(convert_hake(path, tmp_path / "a")["train"])
    assert out["filenames"] == [f"HICO_train2015_0000000{k}.jpg" for k in (1, 2, 3)]
    assert out["annotation"][0]["hoi"] == [152, 0] and out["annotation"][2]["hoi"] == [599]
    assert out["annotation"][0]["boxes_h"][0] == [1, 2, 30, 40]  # 1-based inclusive, unchanged
    assert out["annotation"][0]["verb"][0] == int(meta.hoi_verb[152])
    assert out["size"] == [[64, 48], list(UNKNOWN_SIZE), [64, 48]] and out["empty"] == [1]
    assert "485" not in capsys.readouterr().out  # the warning counts this file's images
    assert validate_annotations(out) == []
    info = json.loads((tmp_path / "a" / "convert_info.json").read_text())
    assert info["sizes_unknown"]["images"] == ["HICO_train2015_00000002.jpg"]
    # with the images folder the label-less image takes its size from its header
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (33, 21)).save(images / "HICO_train2015_00000002.jpg")
    with_images = load_annotations(convert_hake(path, tmp_path / "b", images)["train"])
    assert with_images["size"][1] == [33, 21]
    # the unknown marker is no size for an image with pairs
    bad = dict(out, size=[list(UNKNOWN_SIZE)] + out["size"][1:])
    assert [p.kind for p in validate_annotations(bad)] == ["size"]
    # detect / extract: an unknown size has nothing to compare with the decoded image
    check_image_size(Image.new("RGB", (5, 4)), "x.jpg", UNKNOWN_SIZE, "anno")


def test_bad_records_named(tmp_path) -> None:
    path, data = _hake(tmp_path)
    data["HICO_train2015_00000003.jpg"]["labels"][0]["hoi_id"] = 601
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"HICO_train2015_00000003.jpg, label 0: hoi_id 601"):
        convert_hake(path, tmp_path / "o")
    data["HICO_train2015_00000003.jpg"]["labels"][0] = {"hoi_id": 1}
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"label 0: expected hoi_id, human_bbox"):
        convert_hake(path, tmp_path / "o")
    data["HICO_train2015_00000003.jpg"]["labels"][0] = _label(1, [30, 1, 10, 10],
                                                              [5, 5, 20, 20])  # x1 > x2
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"box_order.*HICO_train2015_00000003.jpg"):
        convert_hake(path, tmp_path / "o")
    assert not (tmp_path / "o" / "instances_train2015.json").exists()  # validated before writing
    assert main(["--hake", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]) == 2


@pytest.fixture(scope="module")
def hake_train(shared_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hake")
    assert main(["--hake", str(shared_dir / "hicodet" / "hico-det-instance-level.tar.gz"), "--out",
                 str(out)]) == 0
    return load_annotations(out / "instances_train2015.json")


def test_real_file_counts_and_rare_split(hake_train, shared_dir) -> None:
    data = hake_train
    test = json.loads((shared_dir / "hicodet" / "instances_test2015.json").read_text())
    assert len(data["filenames"]) == 38118 and data["filenames"] == sorted(data["filenames"])
    assert data["filenames"][0] == "HICO_train2015_00000001.jpg"
    assert data["filenames"][-1] == "HICO_train2015_00038152.jpg"
    counts = pair_counts(data)
    assert counts.sum() == 117654 and len(data["empty"]) == 485
    assert sum(1 for s in data["size"] if tuple(s) == UNKNOWN_SIZE) == 485
    assert data["rare"] == sorted(test["rare"]) and len(data["rare"]) == 138
    assert data["non_rare"] == sorted(test["non_rare"])
    first = data["annotation"][0]
    assert first["boxes_h"][0] == [208, 33, 427, 300] and first["hoi"][0] == 152
    with open(shared_dir / "hicodet" / "hoi_classes.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    hake = np.array([int(r["train_pairs_hake"]) for r in rows])
    official = np.array([int(r["train_pairs_official"]) for r in rows])
    assert np.array_equal(counts, hake)
    assert official.sum() - counts.sum() == 217 and int((official != counts).sum()) == 36
    assert validate_annotations(data) == []
