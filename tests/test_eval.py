"""The HICO-DET evaluator: reference results of the official code, the protocol's details,
bad input, results files, the MATLAB layouts and the ``hoi eval`` command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.io

from hoi.cli import main as hoi_main
from hoi.data import AnnotationError, hico_metadata
from hoi.data.anno_mat import read_image_labels, write_anno_mat
from hoi.data.annotations import ground_truth_arrays
from hoi.evaluation import (
    HOIResults,
    ResultsError,
    evaluate,
    known_object_images,
    known_object_images_from_labels,
    recall_thresholds,
)
from hoi.evaluation.matlab import export_matlab, read_matlab

from .hicodet_synth import make_instances

TOL = 1e-9
# the small synthetic sets use a few classes only; the evaluator warns about the others
pytestmark = pytest.mark.filterwarnings("ignore:.*HOI classes have no GT pair:UserWarning")
REFERENCE_MAP = {  # shared/hicodet/eval_reference/README.md
    ("noisy", "default"): (0.6215527008, 0.6114697251, 0.6245644988),
    ("noisy", "known_object"): (0.6354164668, 0.6361319201, 0.6352027600),
    ("perfect", "default"): (1.0, 1.0, 1.0),
    ("perfect", "known_object"): (1.0, 1.0, 1.0),
}


# ---------------------------------------------------------------- an independent oracle

def _iou_loop(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw > 0 and ih > 0:
        ua = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - iw * ih
        return iw * ih / ua
    return 0.0


def _oracle(data: dict, det: HOIResults, setting: str) -> np.ndarray:
    """A line-by-line loop version of eval_one.m + VOCevaldet_bboxpair.m (slow, small sets only)."""
    meta = hico_metadata()
    contains = known_object_images(ground_truth_arrays(data), 80)
    thresholds = [0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    ap = np.zeros(600)
    for c in range(600):
        gt = {i: [(h, o) for h, o, k in zip(a["boxes_h"], a["boxes_o"], a["hoi"]) if k == c]
              for i, a in enumerate(data["annotation"])}
        npos = sum(len(v) for v in gt.values())
        used = {i: [False] * len(v) for i, v in gt.items()}
        rows = [r for i in range(len(data["filenames"])) for r in range(len(det))
                if det.image_index[r] == i and det.hoi[r] == c]
        if setting == "known_object":
            rows = [r for r in rows if contains[meta.hoi_object[c], det.image_index[r]]]
        rows = sorted(rows, key=lambda r: -det.score[r])  # Python's sort is stable
        tp, fp = [], []
        for r in rows:
            i = det.image_index[r]
            ov_max, j_max = -np.inf, -1
            for j, (h, o) in enumerate(gt[i]):
                ov = min(_iou_loop(det.boxes_h[r], h), _iou_loop(det.boxes_o[r], o))
                if ov > ov_max:
                    ov_max, j_max = ov, j
            if ov_max >= 0.5 and not used[i][j_max]:
                used[i][j_max] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        rec = ctp / npos if npos else np.zeros(len(tp))
        prec = ctp / np.maximum(ctp + cfp, 1)
        for t in thresholds:
            p = prec[rec >= t]
            ap[c] += (p.max() if len(p) else 0.0) / 11
    return ap


def _random_detections(data: dict, rng: np.random.Generator, n_extra: int = 60) -> HOIResults:
    """Jittered copies of GT (some twice), wrong-class and random boxes, quantised (tied) scores,
    detections on images without GT; rows shuffled."""
    meta = hico_metadata()
    gt = ground_truth_arrays(data)
    keep = rng.random(len(gt.hoi)) < 0.8
    idx = np.concatenate([np.flatnonzero(keep), rng.choice(len(gt.hoi), size=len(gt.hoi) // 3)])
    bh = gt.boxes_h[idx] + rng.integers(-3, 4, size=(len(idx), 4))
    bo = gt.boxes_o[idx] + rng.integers(-3, 4, size=(len(idx), 4))
    hoi = gt.hoi[idx].copy()
    img = gt.image_index[idx]
    classes = np.unique(gt.hoi)
    ri = rng.integers(0, gt.num_images, size=n_extra)
    rb = np.sort(rng.integers(1, 60, size=(n_extra, 2, 2)), axis=2)
    def boxes(k):
        return np.stack([rb[:, 0, 0], rb[:, 1, 0], rb[:, 0, 1], rb[:, 1, 1]], 1) + k

    hoi = np.concatenate([hoi, rng.choice(classes, size=n_extra)])
    bh = np.concatenate([bh, boxes(0)])
    bo = np.concatenate([bo, boxes(2)])
    img = np.concatenate([img, ri])
    bh = np.concatenate([np.minimum(bh[:, :2], bh[:, 2:]), np.maximum(bh[:, :2], bh[:, 2:])], 1)
    bo = np.concatenate([np.minimum(bo[:, :2], bo[:, 2:]), np.maximum(bo[:, :2], bo[:, 2:])], 1)
    score = rng.integers(0, 5, size=len(hoi)) / 4  # many ties
    perm = rng.permutation(len(hoi))
    return HOIResults(img[perm], bh[perm], bo[perm], meta.hoi_object[hoi[perm]], hoi[perm],
                      score[perm])


@pytest.fixture()
def small() -> dict:
    return make_instances(np.random.default_rng(7), num_images=10, max_pairs=6,
                          hois=[0, 1, 2, 5, 160, 161, 599], empty=(3,))


def _one(data: dict, img, h, o, hoi, score) -> HOIResults:
    meta = hico_metadata()
    hoi = np.asarray(hoi)
    return HOIResults(np.asarray(img), np.asarray(h, float), np.asarray(o, float),
                      meta.hoi_object[hoi], hoi, np.asarray(score, float))


def _single_class(boxes_h, boxes_o, images: int = 3, hoi: int = 0) -> dict:
    """An annotation with GT of one class: image 1 holds the given pairs, the others none."""
    data = make_instances(np.random.default_rng(0), num_images=images, empty=tuple(range(images)))
    meta = hico_metadata()
    data["annotation"][1] = {"boxes_h": boxes_h, "boxes_o": boxes_o, "hoi": [hoi] * len(boxes_h),
                             "object": [int(meta.hoi_object[hoi])] * len(boxes_h),
                             "verb": [int(meta.hoi_verb[hoi])] * len(boxes_h)}
    data["size"] = [[200, 200]] * images
    data["empty"] = [i for i in range(images) if i != 1]
    return data


# ---------------------------------------------------------------- the reference

def test_recall_thresholds_are_matlab_colon() -> None:
    expected = [0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert recall_thresholds().tolist() == expected  # exact doubles, not k * 0.1
    assert (np.arange(11) * 0.1).tolist() != expected


@pytest.mark.parametrize("name", ["perfect", "noisy"])
def test_reference_results_class_by_class(shared_dir, name) -> None:
    ref = shared_dir / "hicodet" / "eval_reference"
    result = evaluate(shared_dir / "hicodet" / "instances_test2015.json",
                      HOIResults.load(ref / f"{name}.npz"))
    for setting, suffix in (("default", "def"), ("known_object", "ko")):
        with (ref / f"{name}_{suffix}.tsv").open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        ap = np.array([float(r["AP"]) for r in rows])
        rec = np.array([float(r["recall"]) for r in rows])
        r = result[setting]
        np.testing.assert_allclose(r.ap, ap, rtol=0, atol=TOL)
        np.testing.assert_allclose(r.recall, rec, rtol=0, atol=TOL)
        assert ([int(x["rare"]) for x in rows]
                == np.isin(np.arange(600), r.rare).astype(int).tolist())
        full, rare, non_rare = REFERENCE_MAP[(name, setting)]
        assert abs(r.full - full) < 1e-9 + 5e-11 and abs(r.rare_map - rare) < 1e-9 + 5e-11
        assert abs(r.non_rare_map - non_rare) < 1e-9 + 5e-11


# ---------------------------------------------------------------- the protocol's details

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_loop_oracle(small, seed) -> None:
    det = _random_detections(small, np.random.default_rng(seed))
    result = evaluate(small, det)
    for setting in ("default", "known_object"):
        np.testing.assert_allclose(result[setting].ap, _oracle(small, det, setting), rtol=0,
                                   atol=1e-12)


def test_perfect_detections_give_one(small) -> None:
    gt = ground_truth_arrays(small)
    det = HOIResults(gt.image_index, gt.boxes_h, gt.boxes_o, gt.object, gt.hoi,
                     np.ones(len(gt.hoi)))
    result = evaluate(small, det)
    present = np.unique(gt.hoi)
    for setting in ("default", "known_object"):
        np.testing.assert_allclose(result[setting].ap[present], 1.0, atol=1e-12)
        np.testing.assert_allclose(result[setting].recall[present], 1.0, atol=1e-12)


def test_ties_follow_image_then_row_order() -> None:
    g, good, bad = [10, 10, 60, 60], [10, 10, 60, 60], [100, 100, 150, 150]
    data = _single_class([g], [g])
    # same score: a false positive on image 0 and a true positive on image 1 -> image 0 first
    rows_img = _one(data, [1, 0], [good, bad], [good, bad], [0, 0], [0.5, 0.5])
    assert evaluate(data, rows_img, "default")["default"].ap[0] == pytest.approx(0.5)
    # same image and score: the earlier row is taken first
    fp_first = _one(data, [1, 1], [bad, good], [bad, good], [0, 0], [0.5, 0.5])
    tp_first = _one(data, [1, 1], [good, bad], [good, bad], [0, 0], [0.5, 0.5])
    assert evaluate(data, fp_first, "default")["default"].ap[0] == pytest.approx(0.5)
    assert evaluate(data, tp_first, "default")["default"].ap[0] == pytest.approx(1.0)


def test_largest_overlap_decides_even_if_taken() -> None:
    g1, g2 = [10, 10, 59, 59], [30, 10, 79, 59]
    data = _single_class([g1, g2], [g1, g2])
    # det 1 is g1 exactly; det 2 overlaps g1 more than g2 (both >= 0.5), so it is a false positive
    d2 = [15, 10, 64, 59]
    det = _one(data, [1, 1], [g1, d2], [g1, d2], [0, 0], [0.9, 0.8])
    r = evaluate(data, det, "default")["default"]
    assert r.recall[0] == 0.5 and r.ap[0] == pytest.approx(6 / 11)


def test_overlap_of_exactly_half_matches() -> None:
    g = [1, 1, 10, 10]  # 10 x 10 pixels under the +1 convention
    data = _single_class([g], [g])
    half = [1, 1, 10, 5]  # 10 x 5 pixels inside it: IoU exactly 0.5
    det = _one(data, [1], [half], [g], [0], [1.0])
    assert evaluate(data, det, "default")["default"].ap[0] == pytest.approx(1.0)
    smaller = [1, 1, 10, 4.9]
    det = _one(data, [1], [smaller], [g], [0], [1.0])
    assert evaluate(data, det, "default")["default"].ap[0] == 0.0


def test_detections_without_gt_and_known_object() -> None:
    g = [10, 10, 60, 60]
    data = _single_class([g], [g], images=4)
    meta = hico_metadata()
    other = int(np.flatnonzero(meta.hoi_object != meta.hoi_object[0])[0])
    oo = [70, 70, 90, 90]
    data["annotation"][2] = {"boxes_h": [g], "boxes_o": [oo], "hoi": [other],
                             "object": [int(meta.hoi_object[other])],
                             "verb": [int(meta.hoi_verb[other])]}
    data["empty"] = [0, 3]
    # higher-scored false positives of class 0 on image 0 (no GT at all) and image 2
    # (another object)
    det = _one(data, [0, 2, 1], [g, g, g], [g, g, g], [0, 0, 0], [0.9, 0.8, 0.7])
    r = evaluate(data, det)
    assert r["default"].ap[0] == pytest.approx(1 / 3)  # FP, FP, TP
    assert r["known_object"].ap[0] == pytest.approx(1.0)  # only image 1 contains the object
    assert r["default"].recall[0] == r["known_object"].recall[0] == 1.0


def test_known_object_from_image_labels(small, tmp_path) -> None:
    write_anno_mat({"test": small}, tmp_path / "anno.mat")
    labels = read_image_labels(tmp_path / "anno.mat", "test")
    meta = hico_metadata()
    sets = known_object_images_from_labels(labels, meta.hoi_object, 80)
    assert np.array_equal(sets, known_object_images(ground_truth_arrays(small), 80))
    det = _random_detections(small, np.random.default_rng(5))
    a = evaluate(small, det, "known_object", ko_images=sets)["known_object"].ap
    assert np.array_equal(a, evaluate(small, det, "known_object")["known_object"].ap)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("field, row, value, match", [
    ("score", 3, np.nan, r"row 3: score .*finite"),
    ("score", 4, np.inf, r"row 4: score"),
    ("boxes_h", 2, [50, 10, 40, 20], r"row 2: boxes_h .*x1 <= x2"),
    ("boxes_o", 1, [10, 50, 40, 20], r"row 1: boxes_o"),
    ("image_index", 0, 10, r"row 0: image_index \[10\]; expected 0..9"),
    ("image_index", 5, -1, r"row 5: image_index"),
    ("hoi", 2, 600, r"row 2: hoi \[600\]; expected 0..599"),
    ("object", 3, 79, r"row 3: object 79 does not match HOI"),
])
def test_bad_detections_are_refused(small, field, row, value, match) -> None:
    det = _random_detections(small, np.random.default_rng(0))
    getattr(det, field)[row] = value
    if field == "hoi":
        det.object[row] = 0
    with pytest.raises(ResultsError, match=match):
        evaluate(small, det)


def test_bad_annotations_are_refused(small) -> None:
    det = _random_detections(small, np.random.default_rng(0))
    broken = dict(small)
    del broken["correspondence"]
    with pytest.raises(AnnotationError, match="correspondence"):
        evaluate(broken, det)
    with pytest.raises(AnnotationError, match="expected a JSON object"):
        evaluate([1, 2], det)  # type: ignore[arg-type]
    with pytest.raises(ResultsError, match="'hoi' has 2 rows"):
        HOIResults(np.zeros(3), np.zeros((3, 4)), np.zeros((3, 4)), np.zeros(3), np.zeros(2),
                   np.zeros(3))
    with pytest.raises(ResultsError, match="'image_index'.*integers"):
        HOIResults(np.array([0.5]), np.zeros((1, 4)), np.zeros((1, 4)), [0], [0], [1.0])


def test_empty_detection_set_warns_and_gives_zero(small) -> None:
    with pytest.warns(UserWarning, match="empty"):
        r = evaluate(small, HOIResults.empty())
    assert r["default"].full == 0.0 and r["known_object"].full == 0.0


# ---------------------------------------------------------------- files

@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_results_file_round_trip(small, tmp_path, suffix) -> None:
    det = _random_detections(small, np.random.default_rng(1))
    det.filenames = list(small["filenames"])
    det.meta = {"model": "test"}
    det.save(tmp_path / f"r{suffix}")
    back = HOIResults.load(tmp_path / f"r{suffix}")
    for k in ("image_index", "boxes_h", "boxes_o", "object", "hoi", "score"):
        assert np.array_equal(getattr(back, k), getattr(det, k))
    assert back.filenames == det.filenames and back.meta == det.meta


def test_filenames_map_to_annotation_order(small) -> None:
    det = _random_detections(small, np.random.default_rng(2))
    expected = evaluate(small, det)["default"].ap
    perm = np.random.default_rng(0).permutation(len(small["filenames"]))
    shuffled = HOIResults(np.argsort(perm)[det.image_index], det.boxes_h, det.boxes_o, det.object,
                          det.hoi, det.score, [small["filenames"][p] for p in perm])
    assert np.array_equal(evaluate(small, shuffled)["default"].ap, expected)
    shuffled.filenames[0] = "unknown.jpg"
    with pytest.raises(ResultsError, match="unknown.jpg"):
        evaluate(small, shuffled)


@pytest.mark.parametrize("layout", ["per_object", "all"])
def test_matlab_export_round_trip(small, tmp_path, layout) -> None:
    det = _random_detections(small, np.random.default_rng(3))
    n = len(small["filenames"])
    files = export_matlab(det, n, tmp_path, layout)
    assert len(files) == (80 if layout == "per_object" else 1)
    back = read_matlab(tmp_path if layout == "per_object" else files[0], n)
    assert len(back) == len(det)
    expected = evaluate(small, det)
    got = evaluate(small, back)
    for s in ("default", "known_object"):
        assert np.array_equal(got[s].ap, expected[s].ap)
    if layout == "per_object":  # COCO order: file 01 is person, rows are the object's HOIs
        meta = hico_metadata()
        first, stop = meta.object_hoi_range(49)
        cells = scipy.io.loadmat(tmp_path / "detections_01.mat")["all_boxes"]
        assert cells.shape == (stop - first, n)


def test_matlab_reader_on_a_scipy_written_file(small, tmp_path) -> None:
    """A file written independently of our writer: 0-based boxes, 600 x N cells."""
    n = len(small["filenames"])
    cells = np.empty((600, n), dtype=object)
    cells.fill(np.zeros((0, 0)))
    cells[0, 2] = np.array([[0, 1, 10, 11, 4, 5, 20, 21, 0.75], [1, 1, 2, 2, 3, 3, 4, 4, 0.5]])
    cells[599, 4] = np.array([[9, 9, 19, 19, 0, 0, 5, 5, 0.25]])
    scipy.io.savemat(tmp_path / "detections.mat", {"all_boxes": cells})
    det = read_matlab(tmp_path / "detections.mat", n)
    assert det.hoi.tolist() == [0, 0, 599] and det.image_index.tolist() == [2, 2, 4]
    assert det.boxes_h[0].tolist() == [1, 2, 11, 12] and det.boxes_o[2].tolist() == [1, 1, 6, 6]
    assert det.score.tolist() == [0.75, 0.5, 0.25]
    with pytest.raises(ResultsError, match=r"expected a cell array of shape \(600, 11\)"):
        read_matlab(tmp_path / "detections.mat", n + 1)


def test_hoi_eval_command(small, tmp_path, capsys) -> None:
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(small))
    det = _random_detections(small, np.random.default_rng(4))
    det.save(tmp_path / "det.npz")
    code = hoi_main(["eval", "--anno", str(anno), "--detections", str(tmp_path / "det.npz"),
                     "--json", str(tmp_path / "r.json"), "--per-class", str(tmp_path / "c.csv"),
                     "--export-matlab", str(tmp_path / "mat")])
    assert code == 0
    out = capsys.readouterr().out
    assert "Known-Object" in out and "Non-Rare" in out
    result = json.loads((tmp_path / "r.json").read_text())
    expected = evaluate(small, det)
    for s in ("default", "known_object"):
        assert (set(result[s]) >= {"full", "rare", "non_rare", "ap", "recall"}
                and len(result[s]["ap"]) == 600)
        assert result[s]["full"] == expected[s].full and result[s]["ap"] == expected[s].ap.tolist()
    with (tmp_path / "c.csv").open() as f:
        assert len(list(csv.reader(f))) == 601
    code = hoi_main(["eval", "--anno", str(anno), "--detections", str(tmp_path / "mat"),
                     "--setting", "default", "--json", str(tmp_path / "m.json")])
    assert code == 0
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["default"]["ap"] == expected["default"].ap.tolist()


def test_annotated_classes_average_only_classes_with_ground_truth() -> None:
    """On a test set covering few classes, ``classes="annotated"`` averages over those only."""
    from hoi.data import build_instances
    from hoi.evaluation import HOIResults, evaluate

    meta = hico_metadata()
    cup, horse = meta.objects.index("cup"), meta.objects.index("horse")
    hold, ride = meta.verbs.index("hold"), meta.verbs.index("ride")
    hoi_a, hoi_b = int(meta.pair_to_hoi[cup, hold]), int(meta.pair_to_hoi[horse, ride])
    box_h, box_o = [1, 1, 40, 80], [50, 10, 90, 40]
    pairs = [{"boxes_h": [box_h], "boxes_o": [box_o], "hoi": [h], "object": [o], "verb": [v]}
             for h, o, v in ((hoi_a, cup, hold), (hoi_b, horse, ride))]
    data = build_instances(["a.jpg", "b.jpg"], [[100, 100], [100, 100]], pairs)
    det = HOIResults(image_index=np.array([0, 1]), boxes_h=np.array([box_h] * 2, dtype=float),
                     boxes_o=np.array([box_o] * 2, dtype=float), object=np.array([cup, horse]),
                     hoi=np.array([hoi_a, hoi_b]), score=np.array([0.9, 0.8]))
    with pytest.warns(UserWarning, match="no GT pair"):
        official = evaluate(data, det, "default")["default"]
    assert official.full == pytest.approx(2 / 600)
    annotated = evaluate(data, det, "default", classes="annotated")["default"]
    assert annotated.full == pytest.approx(1.0)
    assert sorted(annotated.classes.tolist()) == sorted([hoi_a, hoi_b])
    assert set(annotated.rare.tolist()) | set(annotated.non_rare.tolist()) == {hoi_a, hoi_b}
    assert (hoi_a in data["rare"]) == (hoi_a in annotated.rare.tolist())


# ---------------------------------------------------------------- a split without a class

def test_hoi_eval_says_why_a_split_has_no_map(small, tmp_path, capsys) -> None:
    # an annotation whose every class counts as rare: Non-Rare has no class to average
    data = dict(small, rare=list(range(600)), non_rare=[])
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(data))
    _random_detections(data, np.random.default_rng(4)).save(tmp_path / "det.npz")
    capsys.readouterr()
    assert hoi_main(["eval", "--anno", str(anno), "--detections", str(tmp_path / "det.npz"),
                     "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("Default", "Known-Object"))]
    assert len(rows) == 2 and all(row.split()[-1] == "n/a" and "nan" not in row for row in rows)
    why = "no non-rare class in this annotation (its 'non_rare' list is empty)"
    assert out.count(f"note: Non-Rare mAP is n/a: {why}") == 1  # once, not per setting
    result = json.loads((tmp_path / "r.json").read_text(),
                        parse_constant=lambda c: float(c))  # NaN stays NaN in the JSON
    assert np.isnan(result["default"]["non_rare"])
    assert result["default"]["empty_splits"] == {"non_rare": why}


def test_annotated_classes_without_a_rare_one_say_so(small) -> None:
    # every annotated class is non-rare: averaged over the annotated classes, Rare is empty
    present = sorted(int(c) for c in np.unique(ground_truth_arrays(small).hoi))
    data = dict(small, non_rare=present, rare=[c for c in range(600) if c not in present])
    det = _random_detections(data, np.random.default_rng(5))
    result = evaluate(data, det, "default", classes="annotated")
    r = result["default"]
    assert np.isnan(r.rare_map) and not np.isnan(r.full) and not np.isnan(r.non_rare_map)
    assert r.empty_reasons() == {"rare": "no rare class has a GT pair in this annotation (the "
                                         "mean runs over the classes with GT pairs only)"}
    assert result.table().splitlines()[-1].startswith("note: Rare mAP is n/a: no rare class")
    # a complete annotation has nothing to explain
    full = evaluate(data, det, "default")
    assert full["default"].empty_reasons() == {} and "note" not in full.table()
    assert "empty_splits" not in full.to_dict()["default"]
