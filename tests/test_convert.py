"""data_prep.convert: the official anno_bbox.mat structure -> instances_*.json, and back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io

from data_prep.convert import convert_anno_bbox, main
from hoi.data import AnnotationError, hico_metadata, load_annotations, validate_annotations
from hoi.data.anno_mat import (
    OfficialHOI,
    OfficialImage,
    read_anno_bbox_mat,
    write_anno_bbox_mat,
    write_anno_mat,
    write_official_mat,
)

from .hicodet_synth import make_instances

H1, H2, O1 = [10, 20, 50, 90], [30, 25, 70, 95], [40, 40, 100, 80]


def _official() -> dict[str, list[OfficialImage]]:
    """Every layout scipy collapses: one-row connections, 1x1 struct arrays, invisible entries,
    images without pairs, and a split with a single image."""
    test = [
        OfficialImage("HICO_test2015_00000001.jpg", 120, 100, 3, [
            OfficialHOI(12, np.array([H1, H2]), np.array([O1]), np.array([[1, 1], [2, 1]])),
            OfficialHOI(9, np.array([H2]), np.array([O1]), np.array([[1, 1]])),
            OfficialHOI(5, invis=True),
        ]),
        OfficialImage("HICO_test2015_00000002.jpg", 80, 60, 3, [OfficialHOI(600, invis=True)]),
        OfficialImage("HICO_test2015_00000004.jpg", 90, 90, 3, []),
        OfficialImage("HICO_test2015_00000007.jpg", 120, 100, 3, [
            OfficialHOI(1, np.array([H1]), np.array([O1]), np.array([[1, 1]]))]),
    ]
    ten_humans = np.array([[1, 1, 5 + k, 9] for k in range(10)], dtype=float)
    train = [OfficialImage("HICO_train2015_00000001.jpg", 50, 40, 3, [
        OfficialHOI(12, ten_humans, np.array([[2, 2, 30, 30]]),
                    np.stack([np.arange(1, 11), np.ones(10, int)], 1)),
        OfficialHOI(9, np.array([[1, 1, 5, 5]]), np.array([[2, 2, 6, 6]]), np.array([[1, 1]])),
    ])]
    return {"train": train, "test": test}


def test_convert_every_layout(tmp_path) -> None:
    meta = hico_metadata()
    write_official_mat(_official(), tmp_path / "anno_bbox.mat")
    written = convert_anno_bbox(tmp_path / "anno_bbox.mat", tmp_path / "out")
    test = load_annotations(written["test"])
    train = load_annotations(written["train"])
    assert set(test) == set(json.loads(json.dumps(test)))
    assert test["filenames"][3] == "HICO_test2015_00000007.jpg" and test["size"][0] == [120, 100]
    a = test["annotation"][0]
    assert a["hoi"] == [11, 11, 8]  # invisible entry left out, one pair per connection
    # boxes unchanged (1-based)
    assert a["boxes_h"] == [H1, H2, H2] and a["boxes_o"] == [O1, O1, O1]
    assert a["object"] == [int(meta.hoi_object[11])] * 2 + [int(meta.hoi_object[8])]
    assert a["verb"] == [int(meta.hoi_verb[11])] * 2 + [int(meta.hoi_verb[8])]
    assert test["annotation"][3]["hoi"] == [0]
    assert test["empty"] == [1, 2]
    # rare split from the training split of the input: only class 11 has >= 10 pairs
    assert train["non_rare"] == [11] and len(train["rare"]) == 599 and test["rare"] == train["rare"]
    assert len(train["annotation"][0]["hoi"]) == 11
    assert validate_annotations(test) == [] and validate_annotations(train) == []
    assert (tmp_path / "out" / "convert_info.json").is_file()


def test_single_image_split_and_scalar_fields(tmp_path) -> None:
    """A 1x1 bbox_test, a 1x1 hoi and a 1x1 bboxhuman collapse to bare structs when read."""
    hoi = {"id": 3.0, "bboxhuman": {"x1": 1, "y1": 2, "x2": 3, "y2": 4},
           "bboxobject": {"x1": 2, "y1": 2, "x2": 9, "y2": 9}, "connection": np.array([1.0, 1.0]),
           "invis": 0}
    record = {"filename": "HICO_test2015_00000001.jpg",
              "size": {"width": 10, "height": 10, "depth": 3}, "hoi": hoi}
    scipy.io.savemat(tmp_path / "a.mat", {"bbox_test": record})
    images = read_anno_bbox_mat(tmp_path / "a.mat")["test"]
    assert len(images) == 1 and images[0].hois[0].connection.tolist() == [[1, 1]]
    out = convert_anno_bbox(tmp_path / "a.mat", tmp_path / "out")
    data = load_annotations(out["test"])
    assert (data["annotation"][0]["boxes_h"] == [[1.0, 2.0, 3.0, 4.0]]
            and data["annotation"][0]["hoi"] == [2])
    assert "train" not in out


def test_round_trip_mat_json_mat_json(tmp_path) -> None:
    write_official_mat(_official(), tmp_path / "a.mat")
    first = convert_anno_bbox(tmp_path / "a.mat", tmp_path / "j1")
    dicts = {s: load_annotations(p) for s, p in first.items()}
    write_anno_bbox_mat(dicts, tmp_path / "b.mat")
    second = convert_anno_bbox(tmp_path / "b.mat", tmp_path / "j2")
    for split in ("train", "test"):
        assert load_annotations(second[split]) == dicts[split]


def test_round_trip_random_instances(tmp_path) -> None:
    rng = np.random.default_rng(3)
    test = make_instances(rng, num_images=12, max_pairs=6, hois=[0, 1, 2, 3, 4], empty=(2, 5))
    train = make_instances(rng, num_images=5, max_pairs=6, hois=[0, 1, 2], empty=())
    train["filenames"] = [n.replace("test", "train") for n in train["filenames"]]
    # group each image's pairs by HOI (the official structure stores them that way)
    for d in (test, train):
        for a in d["annotation"]:
            order = sorted(range(len(a["hoi"])), key=lambda j: (a["hoi"].index(a["hoi"][j]), j))
            for k in a:
                a[k] = [a[k][j] for j in order]
    write_anno_bbox_mat({"train": train, "test": test}, tmp_path / "a.mat")
    out = convert_anno_bbox(tmp_path / "a.mat", tmp_path / "j")
    back = load_annotations(out["test"])
    assert back["annotation"] == test["annotation"] and back["filenames"] == test["filenames"]
    assert back["size"] == test["size"] and back["empty"] == test["empty"]


def test_shared_boxes_and_json_accepted_as_is(tmp_path, shared_dir) -> None:
    src = shared_dir / "hicodet" / "instances_test2015.json"
    out = convert_anno_bbox(src, tmp_path)
    assert out["as_is"].read_bytes() == src.read_bytes()


def test_anno_mat_checks(tmp_path) -> None:
    write_official_mat(_official(), tmp_path / "anno_bbox.mat")
    dicts = {"test": load_annotations(convert_anno_bbox(tmp_path / "anno_bbox.mat",
                                                        tmp_path / "j")["test"])}
    write_anno_mat(dicts, tmp_path / "anno.mat")
    convert_anno_bbox(tmp_path / "anno_bbox.mat", tmp_path / "k", tmp_path / "anno.mat")
    mat = scipy.io.loadmat(tmp_path / "anno.mat")
    actions = mat["list_action"]
    actions[[0, 1]] = actions[[1, 0]]
    scipy.io.savemat(tmp_path / "bad.mat", {"list_action": actions, "list_test": mat["list_test"]})
    with pytest.raises(AnnotationError, match=r"list_action\(1\)"):
        convert_anno_bbox(tmp_path / "anno_bbox.mat", tmp_path / "k", tmp_path / "bad.mat")


def test_errors_name_file_record_and_field(tmp_path) -> None:
    data = _official()
    data["test"][3].hois[0].connection = np.array([[1, 2]])  # object box 2 does not exist
    write_official_mat(data, tmp_path / "bad.mat")
    with pytest.raises(AnnotationError) as err:
        convert_anno_bbox(tmp_path / "bad.mat", tmp_path / "out")
    msg = str(err.value)
    assert "bad.mat" in msg and "bbox_test(4)" in msg and "HICO_test2015_00000007.jpg" in msg
    assert "hoi(1).connection" in msg
    scipy.io.savemat(tmp_path / "nosize.mat",
                     {"bbox_test": {"filename": "x.jpg", "size": {"width": 3}, "hoi": []}})
    with pytest.raises(AnnotationError, match=r"bbox_test\(1\) 'x.jpg'.*height"):
        convert_anno_bbox(tmp_path / "nosize.mat", tmp_path / "out")
    scipy.io.savemat(tmp_path / "other.mat", {"foo": 1})
    with pytest.raises(AnnotationError, match="bbox_train"):
        convert_anno_bbox(tmp_path / "other.mat", tmp_path / "out")


def test_cli(tmp_path, capsys) -> None:
    write_official_mat(_official(), tmp_path / "anno_bbox.mat")
    assert main(["--mat", str(tmp_path / "anno_bbox.mat"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "instances_train2015.json").is_file()
    assert "4 images, 4 pairs, 2 without pairs" in capsys.readouterr().out
    assert main(["--mat", str(tmp_path / "missing.mat"), "--out", str(tmp_path / "o")]) == 2
