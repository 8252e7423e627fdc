"""hoi.data.validate_annotations and python -m data_prep.validate on files corrupted on purpose."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from data_prep.validate import main
from hoi.data import hico_metadata, validate_annotations

from .hicodet_synth import make_instances


@pytest.fixture()
def valid() -> dict:
    return make_instances(np.random.default_rng(0), num_images=6, max_pairs=4, empty=(1,))


def _kinds(problems) -> list[tuple[str, int | None, int | None]]:
    return [(p.kind, p.image, p.pair) for p in problems]


def test_valid_file_has_no_problem(valid) -> None:
    assert validate_annotations(valid) == []


def test_shared_test_split_is_valid(shared_dir) -> None:
    data = json.loads((shared_dir / "hicodet" / "instances_test2015.json").read_text())
    assert validate_annotations(data) == []


@pytest.mark.parametrize("corrupt, expected", [
    (lambda d: d["annotation"][2]["boxes_h"].__setitem__(0, [50, 10, 40, 20]), ("box_order", 2, 0)),
    (lambda d: d["annotation"][3]["boxes_o"].__setitem__(0, [1, 1, float("nan"), 5]),
     ("box_order", 3, 0)),
    (lambda d: d["annotation"][0]["boxes_o"].__setitem__(0, [0, 1, 5, 5]), ("box_outside", 0, 0)),
    (lambda d: d["annotation"][4]["boxes_h"].__setitem__(0, [1, 1, d["size"][4][0] + 1, 5]),
     ("box_outside", 4, 0)),
    (lambda d: d["annotation"][2]["hoi"].__setitem__(0, 600), ("hoi", 2, 0)),
    (lambda d: d["annotation"][2]["hoi"].__setitem__(0, -1), ("hoi", 2, 0)),
    (lambda d: d["annotation"][3]["verb"].__setitem__(0, 117), ("verb", 3, 0)),
    (lambda d: d["annotation"][5]["object"].__setitem__(0, 80), ("object", 5, 0)),
    (lambda d: d["annotation"][0]["hoi"].__setitem__(0, 1.5), ("hoi", 0, 0)),
    (lambda d: d["size"].__setitem__(2, [0, 100]), ("size", 2, None)),
    (lambda d: d["empty"].remove(1), ("empty", 1, None)),
    (lambda d: d["empty"].append(0), ("empty", 0, None)),
    (lambda d: d["empty"].append(99), ("empty", None, None)),
    (lambda d: d["filenames"].__setitem__(3, d["filenames"][0]), ("filename", 3, None)),
    (lambda d: d["verbs"].reverse(), ("verbs", None, None)),
    (lambda d: d["objects"].pop(), ("objects", None, None)),
    (lambda d: d["correspondence"][5].__setitem__(2, 0), ("correspondence", None, None)),
    (lambda d: d["rare"].append(d["non_rare"][0]), ("rare", None, None)),
])
def test_each_corruption_is_reported(valid, corrupt, expected) -> None:
    data = copy.deepcopy(valid)
    corrupt(data)
    assert expected in _kinds(validate_annotations(data))


def test_object_inconsistent_with_hoi(valid) -> None:
    meta = hico_metadata()
    data = copy.deepcopy(valid)
    a = data["annotation"][4]
    j = len(a["hoi"]) - 1
    a["object"][j] = (a["object"][j] + 1) % 80
    problems = validate_annotations(data)
    assert _kinds(problems) == [("correspondence", 4, j)]
    assert meta.hoi_names[a["hoi"][j]] in problems[0].message
    assert data["filenames"][4] in str(problems[0])


def test_every_problem_is_reported(valid) -> None:
    data = copy.deepcopy(valid)
    data["annotation"][0]["boxes_h"][0] = [9, 9, 1, 1]
    data["annotation"][2]["hoi"][0] = 777
    data["size"][3] = [-1, 5]
    kinds = _kinds(validate_annotations(data))
    assert ("box_order", 0, 0) in kinds and ("hoi", 2, 0) in kinds and ("size", 3, None) in kinds


@pytest.mark.parametrize("corrupt", [
    lambda d: d.pop("annotation"),
    lambda d: d["size"].pop(),
    lambda d: d["annotation"][0].pop("verb"),
    lambda d: d["annotation"][0]["verb"].append(1),
    lambda d: d["annotation"][0]["boxes_h"].__setitem__(0, [1, 2, 3]),
])
def test_schema_errors(valid, corrupt) -> None:
    data = copy.deepcopy(valid)
    corrupt(data)
    problems = validate_annotations(data)
    assert [p.kind for p in problems] == ["schema"]


def test_cli_exit_codes(valid, tmp_path, capsys) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(valid))
    assert main([str(good)]) == 0
    bad_data = copy.deepcopy(valid)
    row = 1 if len(bad_data["annotation"][2]["hoi"]) > 1 else 0
    bad_data["annotation"][2]["boxes_o"][row] = [5, 5, 1, 1]
    bad_data["annotation"][3]["hoi"][0] = 1000
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_data))
    capsys.readouterr()
    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"image 2 ({valid['filenames'][2]})" in out and "image 3" in out and "2 problems" in out
    (tmp_path / "broken.json").write_text("{not json")
    assert main([str(tmp_path / "broken.json")]) == 2
