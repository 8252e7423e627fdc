"""``hoi diagnose``: error types of injected false positives on the real test annotations, their
mAP gains against the evaluator run on the filtered files, the order of the rules, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hoi.cli import main as hoi_main
from hoi.data import build_instances, hico_metadata, load_annotations
from hoi.data.annotations import ground_truth_arrays
from hoi.evaluation import HOIResults, evaluate, recall_thresholds
from hoi.evaluation.diagnose import (
    ERROR_TYPES,
    TRUE_POSITIVE,
    diagnose,
    summary_table,
    without_error_type,
)

PER_TYPE = 3  # injected false positives of each type
MISSED = 4  # GT pairs left undetected
LOC_IOU = 0.3  # IoU of a mislocalised box with its GT box
META = hico_metadata()


# ---------------------------------------------------------------- helpers

def _crop(box, iou: float) -> list[float]:
    """A box inside ``box``, full width, whose height makes IoU (+1 convention) ``iou``."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2, y1 - 1 + iou * (y2 - y1 + 1)]


def _disjoint(box) -> list[float]:
    """A box of the same size right of ``box``, not touching it (IoU 0)."""
    x1, y1, x2, y2 = box
    w = x2 - x1 + 1
    return [x1 + 2 * w, y1, x2 + 2 * w, y2]


def _ap11(seq: list[int], npos: int) -> float:
    """11-point AP of a ranked list of outcomes (1 = TP), looped as VOCevaldet_bboxpair.m."""
    if npos == 0 or not seq:
        return 0.0
    tp = np.cumsum(seq)
    rec, prec = tp / npos, tp / np.arange(1, len(seq) + 1)
    return sum(max((p for p, r in zip(prec, rec) if r >= t), default=0.0)
               for t in recall_thresholds()) / 11


class Injected:
    """A results file on the real test annotations: every GT pair detected exactly (score 0.5)
    except :data:`MISSED` of them, plus :data:`PER_TYPE` false positives of each error type;
    every class holds at most one injected false positive, so its ranking is known."""

    def __init__(self, data: dict) -> None:
        gt = ground_truth_arrays(data)
        self.npos = np.bincount(gt.hoi, minlength=600)
        per_image = np.bincount(gt.image_index, minlength=gt.num_images)
        singles = [int(np.flatnonzero(gt.image_index == i)[0])
                   for i in np.flatnonzero(per_image == 1)]
        used: set[int] = set()  # classes that already hold an injected error or a missed pair
        rows = {"image_index": list(gt.image_index), "boxes_h": list(gt.boxes_h),
                "boxes_o": list(gt.boxes_o), "hoi": list(gt.hoi), "score": [0.5] * len(gt.hoi)}
        self.kind: list[str] = ["tp"] * len(gt.hoi)
        # per-class ranking
        self.seq: dict[int, list[int]] = {c: [1] * int(n) for c, n in enumerate(self.npos)}

        def free_single(extra=lambda g: True):
            for g in singles:
                if int(gt.hoi[g]) not in used and extra(g):
                    singles.remove(g)
                    return g
            raise AssertionError("no single-pair image left")

        def other_class(same_object: bool, obj: int) -> int:
            ok = (META.hoi_object == obj) if same_object else (META.hoi_object != obj)
            return next(int(c) for c in np.flatnonzero(ok & (self.npos > 0)) if int(c) not in used)

        def add(kind: str, img: int, bh, bo, c: int, score: float = 1.0) -> None:
            for key, value in (("image_index", img), ("boxes_h", np.asarray(bh, dtype=float)),
                               ("boxes_o", np.asarray(bo, dtype=float)), ("hoi", c),
                               ("score", score)):
                rows[key].append(value)
            self.kind.append(kind)
            used.add(c)
            if kind != "duplicate":
                self.seq[c] = [0] + self.seq[c]  # scored above every true positive of c

        for _ in range(MISSED):
            g = free_single()
            rows["score"][g] = None
            used.add(int(gt.hoi[g]))
            self.seq[int(gt.hoi[g])] = self.seq[int(gt.hoi[g])][1:]
        for _ in range(PER_TYPE):
            # duplicate: same score as its pair's exact detection, a later row -> ranked right
            # after it
            g = free_single(lambda g: self.npos[gt.hoi[g]] >= 2)
            c = int(gt.hoi[g])
            rows["score"][g] = 1.0
            add("duplicate", gt.image_index[g], gt.boxes_h[g], gt.boxes_o[g], c)
            self.seq[c] = [1, 0] + [1] * (int(self.npos[c]) - 1)
            g = free_single()
            add("wrong_verb", gt.image_index[g], gt.boxes_h[g], gt.boxes_o[g],
                other_class(True, int(gt.object[g])))
            g = free_single()
            add("wrong_object", gt.image_index[g], gt.boxes_h[g], gt.boxes_o[g],
                other_class(False, int(gt.object[g])))
            g = free_single()
            add("human_loc", gt.image_index[g], _crop(gt.boxes_h[g], LOC_IOU), gt.boxes_o[g],
                int(gt.hoi[g]))
            g = free_single()
            add("object_loc", gt.image_index[g], gt.boxes_h[g], _crop(gt.boxes_o[g], LOC_IOU),
                int(gt.hoi[g]))
            g = free_single()
            add("both_loc", gt.image_index[g], _crop(gt.boxes_h[g], LOC_IOU),
                _crop(gt.boxes_o[g], LOC_IOU),
                int(gt.hoi[g]))
            g = free_single()
            add("class_and_loc", gt.image_index[g], _crop(gt.boxes_h[g], LOC_IOU),
                _crop(gt.boxes_o[g], LOC_IOU),
                other_class(False, int(gt.object[g])))
            g = free_single()
            add("background", gt.image_index[g], _disjoint(gt.boxes_h[g]), _disjoint(gt.boxes_o[g]),
                int(gt.hoi[g]))
        # background on an image without any GT pair
        empty = int(np.flatnonzero(per_image == 0)[0])
        add("background", empty, [1, 1, 50, 80], [30, 30, 90, 90], other_class(False, -1))
        # mis-grouping: two pairs of one class, far apart; the human of one with the object of
        # the other
        n = 0
        for i in np.flatnonzero(per_image == 2):
            a, b = np.flatnonzero(gt.image_index == i)
            c = int(gt.hoi[a])
            if c != gt.hoi[b] or c in used or not _far(gt.boxes_h[a], gt.boxes_h[b]) or \
                    not _far(gt.boxes_o[a], gt.boxes_o[b]):
                continue
            add("mis_grouping", i, gt.boxes_h[a], gt.boxes_o[b], c)
            n += 1
            if n == PER_TYPE:
                break
        keep = [k for k, s in enumerate(rows["score"]) if s is not None]
        self.kind = [self.kind[k] for k in keep]
        hoi = np.asarray(rows["hoi"])[keep]
        self.det = HOIResults(np.asarray(rows["image_index"])[keep],
                              np.stack(rows["boxes_h"])[keep],
                              np.stack(rows["boxes_o"])[keep], META.hoi_object[hoi], hoi,
                              np.asarray(rows["score"], dtype=object)[keep].astype(float))

    def expected_counts(self) -> dict[str, int]:
        return {t: self.kind.count(t) for t in ERROR_TYPES}

    def expected_ap(self, drop: str | None = None) -> np.ndarray:
        """(600,) AP from the known rankings, optionally without one type's false positives
        (every class holds at most one injected false positive: its kind decides)."""
        owner = {int(c): k for c, k in zip(self.det.hoi, self.kind) if k != "tp"}
        ap = np.zeros(600)
        for c, seq in self.seq.items():
            if drop is not None and owner.get(c) == drop:
                seq = [s for s in seq if s == 1]
            ap[c] = _ap11(seq, int(self.npos[c]))
        return ap


def _far(a, b) -> bool:
    from hoi.data.boxes import iou_inclusive

    return float(iou_inclusive(np.asarray([a]), np.asarray([b]))[0]) < 0.1


# ---------------------------------------------------------------- the real test set

@pytest.fixture(scope="module")
def real(shared_dir):
    data = load_annotations(shared_dir / "hicodet" / "instances_test2015.json")
    injected = Injected(data)
    return data, injected, diagnose(data, injected.det)


def test_injected_errors_get_their_types(real) -> None:
    data, inj, diag = real
    d = diag.to_dict()
    expected = inj.expected_counts()
    assert set(d["false_positives"]) == set(ERROR_TYPES)
    assert d["false_positives"] == expected
    assert all(expected[t] >= PER_TYPE for t in ERROR_TYPES)
    assert d["missed"] == MISSED
    assert d["true_positives"] == int(inj.npos.sum()) - MISSED
    # detection by detection: the outcome of each row is the kind it was built as
    kind_of_row = np.asarray(inj.kind)[diag.order]
    outcome = np.where(diag.outcome == TRUE_POSITIVE, "tp",
                       np.asarray(ERROR_TYPES)[np.maximum(diag.outcome, 0)])
    assert (outcome == kind_of_row).all()


def test_gains_are_the_evaluators_on_the_filtered_file(real) -> None:
    data, inj, diag = real
    d = diag.to_dict()
    full = evaluate(data, inj.det, "default")["default"]
    assert d["map"] == {"full": full.full, "rare": full.rare_map, "non_rare": full.non_rare_map}
    rare = set(int(c) for c in data["rare"])
    for t in ERROR_TYPES:
        kept = without_error_type(inj.det, diag, t)
        assert len(kept) == len(inj.det) - d["false_positives"][t]
        r = evaluate(data, kept, "default")["default"]
        # exactly what `hoi eval` reports for the filtered file, bit for bit
        assert d["map_gain_if_removed"][t] == {"full": r.full - full.full,
                                               "rare": r.rare_map - full.rare_map,
                                               "non_rare": r.non_rare_map - full.non_rare_map}
        assert d["splits"]["rare"]["map_gain_if_removed"][t] == r.rare_map - full.rare_map
        assert [c["ap_gain_if_removed"][t] for c in d["per_class"]] == (r.ap - full.ap).tolist()
        # and what the known rankings give
        gain = inj.expected_ap(t) - inj.expected_ap()
        assert d["map_gain_if_removed"][t]["full"] == pytest.approx(gain.mean(), abs=1e-12)
        assert d["map_gain_if_removed"][t]["rare"] == pytest.approx(gain[sorted(rare)].mean(),
                                                                    abs=1e-12)
        assert gain.sum() > 0  # every injected type costs AP
    np.testing.assert_allclose(full.ap, inj.expected_ap(), atol=1e-12)


def test_splits_and_classes_add_up(real) -> None:
    data, inj, diag = real
    d = diag.to_dict(META.hoi_names)
    rare, non_rare = d["splits"]["rare"], d["splits"]["non_rare"]
    assert rare["num_classes"] == 138 and non_rare["num_classes"] == 462
    for key in ("true_positives", "missed"):
        assert rare[key] + non_rare[key] == d[key] == sum(c[key] for c in d["per_class"])
    for t in ERROR_TYPES:
        assert (rare["false_positives"][t] + non_rare["false_positives"][t]
                == d["false_positives"][t])
    classes = d["per_class"]
    assert len(classes) == 600 and classes[0]["name"] == META.hoi_names[0]
    assert sum(c["num_detections"] for c in classes) == len(inj.det)
    ranking = d["score_ranking"]
    assert sum(sum(ranking[k]) for k in ("true_positive", *ERROR_TYPES)) == len(inj.det)
    # injected false positives (score 1.0) lead their class; duplicates follow their pair
    assert sum(ranking[t][0] for t in ERROR_TYPES if t != "duplicate") == \
        sum(d["false_positives"][t] for t in ERROR_TYPES if t != "duplicate")


def test_map_gain_of_a_known_class(real) -> None:
    """One class by hand: a wrong-verb false positive above its n true positives gives AP
    n / (n + 1) (precision n / (n + 1) at every recall level); removing it gives 1."""
    data, inj, diag = real
    d = diag.to_dict()
    c = next(int(h) for h, k in zip(inj.det.hoi, inj.kind) if k == "wrong_verb")
    n = int(inj.npos[c])
    entry = d["per_class"][c]
    assert entry["ap"] == pytest.approx(n / (n + 1), abs=1e-12)
    assert entry["ap_gain_if_removed"]["wrong_verb"] == pytest.approx(1 / (n + 1), abs=1e-12)
    assert entry["false_positives"]["wrong_verb"] == 1 and entry["true_positives"] == n


# ---------------------------------------------------------------- the order of the rules

def _classes():
    obj = META.hoi_object
    c1 = 0
    c2 = int(np.flatnonzero((obj == obj[c1])
                            & (np.arange(600) != c1))[0])  # same object, another verb
    c3 = int(np.flatnonzero(obj != obj[c1])[0])  # another object
    return c1, c2, c3


def _scene(pairs: list[tuple[list, list, int]], dets: list[tuple[list, list, int, float]]):
    """One image per scene is too many files; one annotation with this single image."""
    p = {"boxes_h": [a for a, _, _ in pairs], "boxes_o": [b for _, b, _ in pairs],
         "hoi": [c for *_, c in pairs],
         "object": [int(META.hoi_object[c]) for *_, c in pairs],
         "verb": [int(META.hoi_verb[c]) for *_, c in pairs]}
    data = build_instances(["HICO_test2015_00000001.jpg"], [(640, 480)], [p])
    det = HOIResults(np.zeros(len(dets), dtype=np.int64), [d[0] for d in dets],
                     [d[1] for d in dets],
                     [int(META.hoi_object[d[2]]) for d in dets], [d[2] for d in dets],
                     [d[3] for d in dets])
    diag = diagnose(data, det, classes="annotated")
    out = np.empty(len(dets), dtype=object)
    out[diag.order] = [("tp" if o == TRUE_POSITIVE else ERROR_TYPES[o]) for o in diag.outcome]
    return list(out)


H, O1 = [1, 1, 100, 100], [201, 1, 300, 100]
H2, O2 = [1, 301, 100, 400], [201, 301, 300, 400]  # far from H and O1


@pytest.mark.parametrize("case", ["duplicate_before_wrong_verb", "wrong_verb_before_human_loc",
                                  "wrong_object_before_object_loc", "mis_grouping_before_human_loc",
                                  "human_loc_before_both_loc", "both_loc_before_class_and_loc"])
def test_the_first_rule_that_applies_wins(case: str) -> None:
    c1, c2, c3 = _classes()

    def half(b):
        return _crop(b, LOC_IOU)

    def quarter(b):
        return _crop(b, 0.2)

    pairs, dets, want = {
        "duplicate_before_wrong_verb": ([(H, O1, c1), (H, O1, c2)],
                                        [(H, O1, c1, 0.9), (H, O1, c1, 0.8)],
                                        ["tp", "duplicate"]),
        "wrong_verb_before_human_loc": ([(H, O1, c1), (half(H), O1, c2)], [(H, O1, c2, 0.9)],
                                        ["wrong_verb"]),
        "wrong_object_before_object_loc": ([(H, O1, c1), (H, half(O1), c3)], [(H, O1, c3, 0.9)],
                                           ["wrong_object"]),
        "mis_grouping_before_human_loc": ([(H, O1, c1), (half(H), O2, c1)], [(H, O2, c1, 0.9)],
                                          ["mis_grouping"]),
        "human_loc_before_both_loc": ([(half(H), O1, c1), (quarter(H), quarter(O1), c1)],
                                      [(H, O1, c1, 0.9)],
                                      ["human_loc"]),
        "both_loc_before_class_and_loc": ([(half(H), half(O1), c1), (quarter(H), quarter(O1), c3)],
                                          [(H, O1, c1, 0.9)],
                                          ["both_loc"]),
    }[case]
    assert _scene(pairs, dets) == want


def test_thresholds_are_inclusive_with_the_plus_one_convention() -> None:
    c1, _, c3 = _classes()
    g, far = [1, 1, 20, 20], [101, 101, 120, 120]  # 20 x 20 pixels
    tenth, below = [1, 1, 20, 2], [1, 1, 20, 1.9]  # IoU exactly 0.1, and 0.095
    tenth_o = [101, 101, 120, 102]
    half = [1, 1, 20, 10]  # IoU exactly 0.5
    pairs = [(g, far, c1)]
    assert _scene(pairs, [(tenth, tenth_o, c1, 1.0)]) == ["both_loc"]
    assert _scene(pairs, [(below, far, c1, 1.0)]) == ["background"]  # human IoU under 0.1
    # object IoU 0.49
    assert _scene(pairs, [(half, [101, 101, 120, 109.8], c1, 1.0)]) == ["object_loc"]
    assert _scene(pairs, [(half, [101, 101, 120, 110], c1, 1.0)]) == ["tp"]
    assert _scene(pairs, [(tenth, tenth_o, c3, 1.0)]) == ["class_and_loc"]
    assert _scene(pairs, [(below, tenth_o, c3, 1.0)]) == ["background"]


# ---------------------------------------------------------------- the command

def test_hoi_diagnose_command(real, shared_dir, tmp_path, capsys) -> None:
    data, inj, diag = real
    main, other = tmp_path / "main.npz", tmp_path / "other.npz"
    inj.det.save(main)
    without_error_type(inj.det, diag, "background").save(other)
    anno = shared_dir / "hicodet" / "instances_test2015.json"
    out = tmp_path / "diag"
    background_classes = {int(c) for c, k in zip(inj.det.hoi, inj.kind) if k == "background"}
    assert hoi_main(["diagnose", "--anno", str(anno), "--detections", str(main), "--compare",
                     str(other),
                     "--out", str(out), "--top", str(len(background_classes))]) == 0
    printed = capsys.readouterr().out
    assert "wrong_verb" in printed and "mis_grouping" in printed
    d = json.loads((out / "diagnosis.json").read_text())
    for key in ("true_positives", "missed", "false_positives", "map_gain_if_removed", "splits",
                "per_class",
                "score_ranking", "compare"):
        assert key in d
    assert list(d["false_positives"]) == list(ERROR_TYPES)
    assert d["false_positives"] == inj.expected_counts()
    assert set(d["map_gain_if_removed"]["background"]) == {"full", "rare", "non_rare"}
    assert set(d["splits"]) == {"rare", "non_rare"}
    cmp = d["compare"]
    assert cmp["diagnosis"]["false_positives"]["background"] == 0
    assert cmp["diagnosis"]["false_positives"]["wrong_verb"] == d["false_positives"]["wrong_verb"]
    # the other file lacks the background false positives: their classes changed, and only they
    assert {c["hoi"] for c in cmp["ap_change_most"]} == background_classes
    assert all(c["change"] < 0 for c in cmp["ap_change_most"])
    for name in ("breakdown.png", "score_ranking.png", "compare.png", "breakdown_compare.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| background |" in (out / "diagnosis.md").read_text()


def test_hoi_diagnose_refuses_bad_results_in_one_line(real, shared_dir, tmp_path, capsys) -> None:
    data, inj, _ = real
    bad = inj.det.select(slice(0, 10))
    bad.object = (bad.object + 1) % 80
    bad.save(tmp_path / "bad.npz")
    anno = shared_dir / "hicodet" / "instances_test2015.json"
    assert hoi_main(["diagnose", "--anno", str(anno), "--detections", str(tmp_path / "bad.npz"),
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "object" in err[0] and "does not match HOI" in err[0]


def test_an_empty_split_is_null_in_json() -> None:
    c1, _, _ = _classes()
    data = build_instances(["HICO_test2015_00000001.jpg"], [(640, 480)],
                           [{"boxes_h": [H], "boxes_o": [O1], "hoi": [c1],
                             "object": [int(META.hoi_object[c1])],
                             "verb": [int(META.hoi_verb[c1])]}])
    det = HOIResults([0, 0], [H, H2], [O1, O2], [int(META.hoi_object[c1])] * 2, [c1, c1],
                     [0.9, 0.95])
    d = diagnose(data, det, classes="annotated").to_dict()
    empty = "non_rare" if c1 in set(data["rare"]) else "rare"
    assert d["map"][empty] is None and d["map_gain_if_removed"]["background"][empty] is None
    assert d["map"]["full"] == pytest.approx(0.5)
    assert d["map_gain_if_removed"]["background"]["full"] == pytest.approx(0.5)
    json.dumps(d, allow_nan=False)  # strict JSON


@pytest.mark.parametrize("argv, match", [(["--loc-iou", "0.6"], "--loc-iou 0.6 and --iou 0.5"),
                                         (["--top", "0"], "--top 0")])
def test_hoi_diagnose_refuses_bad_options(shared_dir, tmp_path, capsys, argv, match) -> None:
    anno = shared_dir / "hicodet" / "instances_test2015.json"
    assert hoi_main(["diagnose", "--anno", str(anno), "--detections", str(tmp_path / "none.npz"),
                     "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_results_of_another_annotation_are_refused_unless_allowed(real, shared_dir, tmp_path,
                                                                  capsys) -> None:
    _, inj, _ = real
    det = inj.det.select(slice(None))
    det.meta = {"annotation": {"file": "instances_test2015.json",
                               "sha256": "0" * 64}}  # as hoi test records it
    det.save(tmp_path / "r.npz")
    argv = ["diagnose", "--anno", str(shared_dir / "hicodet" / "instances_test2015.json"),
            "--detections", str(tmp_path / "r.npz"), "--out", str(tmp_path / "o")]
    assert hoi_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "annotation.sha256" in err[0] and "--allow-mismatch" in err[0]
    assert not (tmp_path / "o").exists()
    assert hoi_main(argv + ["--allow-mismatch", "--top", "1"]) == 0
    d = json.loads((tmp_path / "o" / "diagnosis.json").read_text())
    assert len(d["accepted_mismatches"]) == 1 and "annotation.sha256" in d["accepted_mismatches"][0]
    assert d["false_positives"] == inj.expected_counts()


def test_an_empty_split_says_why() -> None:
    c1, _, _ = _classes()
    data = build_instances(["HICO_test2015_00000001.jpg"], [(640, 480)],
                           [{"boxes_h": [H], "boxes_o": [O1], "hoi": [c1],
                             "object": [int(META.hoi_object[c1])],
                             "verb": [int(META.hoi_verb[c1])]}])
    det = HOIResults([0, 0], [H, H2], [O1, O2], [int(META.hoi_object[c1])] * 2, [c1, c1],
                     [0.9, 0.95])
    d = diagnose(data, det, classes="annotated").to_dict()
    empty = "non_rare" if c1 in set(data["rare"]) else "rare"
    title = {"rare": "Rare", "non_rare": "Non-Rare"}[empty]
    words = {"rare": "rare", "non_rare": "non-rare"}[empty]
    why = (f"no {words} class has a GT pair in this annotation (the mean runs over the classes "
           "with GT pairs only)")
    assert d["empty_splits"] == {empty: why}
    text = summary_table(d)
    assert text.splitlines()[-1] == f"note: {title} mAP is n/a: {why}"
    assert "nan" not in text
    markdown = summary_table(d, markdown=True).splitlines()
    assert markdown[-2] == "" and markdown[-1] == f"Note: {title} mAP is n/a: {why}"
    # the same note once for two diagnoses of one annotation
    assert summary_table(d, d).count("note:") == 1


def test_hoi_diagnose_says_why_a_split_has_no_map(tmp_path, capsys) -> None:
    c1, _, c3 = _classes()
    pairs = {"boxes_h": [H, H2], "boxes_o": [O1, O2], "hoi": [c1, c3],
             "object": [int(META.hoi_object[c]) for c in (c1, c3)],
             "verb": [int(META.hoi_verb[c]) for c in (c1, c3)]}
    data = build_instances(["HICO_test2015_00000001.jpg"], [(640, 480)], [pairs],
                           train_pairs=np.zeros(600))  # every class is rare
    assert data["non_rare"] == []
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps(data))
    HOIResults([0, 0], [H, H2], [O1, O2], [int(META.hoi_object[c]) for c in (c1, c3)], [c1, c3],
               [0.9, 0.8]).save(tmp_path / "det.npz")
    capsys.readouterr()
    assert hoi_main(["diagnose", "--anno", str(anno), "--detections", str(tmp_path / "det.npz"),
                     "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    why = "no non-rare class in this annotation (its 'non_rare' list is empty)"
    assert f"note: Non-Rare mAP is n/a: {why}" in printed, printed
    d = json.loads((tmp_path / "o" / "diagnosis.json").read_text())
    assert d["map"]["non_rare"] is None and d["empty_splits"] == {"non_rare": why}
    assert f"Note: Non-Rare mAP is n/a: {why}" in (tmp_path / "o" / "diagnosis.md").read_text()
