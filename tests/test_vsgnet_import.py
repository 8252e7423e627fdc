"""--source import --import-format vsgnet: the official VSGNet detection files, boxes worked out
by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data_prep.detect import main as detect_main
from data_prep.detect import parse_args
from data_prep.vsgnet_detections import COCO80_NAMES, coco_name_to_hico
from hoi.data.annotations import build_instances
from hoi.data.cache import ProposalFile
from hoi.data.metadata import hico_metadata

NAMES = ["HICO_test2015_00000001.jpg", "HICO_test2015_00000002.jpg"]
SIZES = [[640, 480], [300, 200]]


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    pairs = [{"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}] * 2
    anno = tmp_path / "instances_test2015.json"
    anno.write_text(json.dumps(build_instances(NAMES, SIZES, pairs)))
    folder = tmp_path / "Object_Detections_hico" / "test"
    folder.mkdir(parents=True)
    dets = [
        {"class_str": "person", "score": 0.95, "box_coords": [10.5, 20.25, 400.0, 300.75]},
        {"class_str": "dining table", "score": 0.02, "box_coords": [200.0, 0.0, 479.5, 639.5]},
        {"class_str": "cell phone", "score": 0.4, "box_coords": [-3.0, 630.5, 30.0, 700.0]},
    ]
    (folder / "HICO_test2015_00000001.json").write_text(json.dumps({"H": 480, "W": 640,
                                                                    "detections": dets}))
    (folder / "HICO_test2015_00000002.json").write_text(json.dumps({"H": 200, "W": 300,
                                                                    "detections": []}))
    return anno, folder


def _args(anno: Path, folder: Path, out: Path) -> list[str]:
    return ["--source", "import", "--import-format", "vsgnet", "--import-dir", str(folder),
            "--anno", str(anno), "--out", str(out)]


def test_vsgnet_files_import_with_boxes_by_hand(tmp_path, capsys) -> None:
    anno, folder = _setup(tmp_path)
    out = tmp_path / "detections_test2015.h5"
    assert detect_main(_args(anno, folder, out)) == 0
    # image 1 lists 0.95, 0.02, 0.4: kept in that (file) order, and counted as unsorted
    assert "1 of 2 images list their detections out of descending score order" in (
        capsys.readouterr().out)
    f = ProposalFile(out)
    d = f[0]
    # [top, left, bottom, right] -> [left + 1, top + 1, right, bottom],
    # clipped to [1, 640] x [1, 480]
    np.testing.assert_allclose(d.boxes, [[21.25, 11.5, 300.75, 400.0],
                                         [1.0, 201.0, 639.5, 479.5],
                                         [631.5, 1.0, 640.0, 30.0]])
    # every detection kept, none cut
    np.testing.assert_allclose(d.scores, [0.95, 0.02, 0.4], rtol=1e-6)
    # person, dining_table, cell_phone in hico_obj_list.txt
    assert d.labels.tolist() == [49, 27, 21]
    assert len(f[1].boxes) == 0


def test_vsgnet_size_disagreeing_with_the_annotation_is_refused(tmp_path, capsys) -> None:
    anno, folder = _setup(tmp_path)
    bad = folder / "HICO_test2015_00000002.json"
    bad.write_text(json.dumps({"H": 300, "W": 200, "detections": []}))
    out = tmp_path / "d.h5"
    assert detect_main(_args(anno, folder, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert "200 x 300" in err and "300 x 200" in err
    assert not list(tmp_path.glob("d.h5*"))


def test_vsgnet_unknown_class_is_refused(tmp_path, capsys) -> None:
    anno, folder = _setup(tmp_path)
    bad = folder / "HICO_test2015_00000001.json"
    bad.write_text(json.dumps({"H": 480, "W": 640, "detections": [
        {"class_str": "tvmonitor", "score": 0.5, "box_coords": [1, 2, 3, 4]}]}))
    assert detect_main(_args(anno, folder, tmp_path / "d.h5")) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "detection 0" in err and "tvmonitor" in err


def test_project_format_stays_the_default() -> None:
    assert parse_args(["--anno", "a", "--out", "b", "--source",
                       "import"]).import_format == "project"


def test_coco_names_map_through_the_packaged_table() -> None:
    meta = hico_metadata()
    table = coco_name_to_hico()
    assert len(table) == 80 and sorted(table.values()) == list(range(80))
    for name in COCO80_NAMES:  # VSGNet's own rule: the HICO name is the COCO name with '_' for ' '
        assert meta.objects[table[name]] == name.replace(" ", "_")
