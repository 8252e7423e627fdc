"""Why a results file scores the mAP it does: an HOI error analysis in the spirit of TIDE
(Bolya et al., ECCV 2020), on the official HICO-DET matching (Default setting).

Every detection keeps the outcome of :func:`hoi.evaluation.hico_det.match_detections`; each
false positive gets exactly one error type, the first that applies in :data:`ERROR_TYPES` order
(IoU with the official +1 pixel convention, ``t`` the match threshold, 0.5, and
``l`` = :data:`LOC_MIN_IOU`):

1. ``duplicate``: its best GT pair of its class c has min(IoU_h, IoU_o) >= t but was matched
   by a higher-scored detection;
2. ``wrong_verb``: a GT pair of another class with the same object has IoU_h >= t and IoU_o >= t;
3. ``wrong_object``: a GT pair with another object has IoU_h >= t and IoU_o >= t;
4. ``mis_grouping``: its human box matches the human of one GT pair of class c and its object
   box the object of another (IoU >= t each);
5. ``human_loc``: a GT pair of class c has IoU_o >= t and l <= IoU_h < t;
6. ``object_loc``: a GT pair of class c has IoU_h >= t and l <= IoU_o < t;
7. ``both_loc``: a GT pair of class c has l <= IoU_h < t and l <= IoU_o < t;
8. ``class_and_loc``: a GT pair of another class has IoU_h >= l and IoU_o >= l;
9. ``background``: none of the above.

GT pairs that no detection matched are ``missed``. The mAP gain of a type is the mAP of the
results without that type's false positives minus the mAP of all of them. Removing false
positives never changes which of the remaining detections are true positives (a true positive
is the first detection, in score order, that claims its GT pair; a removed false positive never
was), so the evaluator's AP code (:func:`hoi.evaluation.hico_det.per_class_ap`) is run on the
one matching with those rows left out, which is what ``hoi eval`` computes on the filtered
file, bit for bit (``tests/test_diagnose.py`` checks it against :func:`evaluate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hoi.data.annotations import GroundTruth, load_annotations
from hoi.data.boxes import iou_inclusive
from hoi.evaluation.hico_det import (
    IOU_THRESHOLD,
    Matching,
    match_detections,
    per_class_ap,
    prepare,
    recall_thresholds,
    setting_result,
)
from hoi.evaluation.hoi_results import HOIResults
from hoi.evaluation.map_scores import NO_MEAN, SPLIT_TITLES, SettingResult

ERROR_TYPES = ("duplicate", "wrong_verb", "wrong_object", "mis_grouping", "human_loc", "object_loc",
               "both_loc", "class_and_loc", "background")
TRUE_POSITIVE = -1  # outcome code of a true positive; error types are 0..8 in ERROR_TYPES order
LOC_MIN_IOU = 0.1  # below this a box is not "mislocalised" but elsewhere
CLASSIFY_CHUNK = 1 << 17  # false positives compared with their images' GT pairs at once
RANK_BINS = 20  # bins of the relative rank within a class (score ranking histogram)
SPLITS = ("full", "rare", "non_rare")

# one bit per GT-pair condition, OR-reduced over the GT pairs of a detection's image
(_WRONG_VERB, _WRONG_OBJECT, _HUMAN_HIT, _OBJECT_HIT, _HUMAN_LOC, _OBJECT_LOC, _BOTH_LOC,
 _CLASS_LOC) = (np.uint8(1 << k) for k in range(8))


@dataclass(frozen=True)
class Diagnosis:
    """The outcome of every detection of one results file, and the mAP without each error type.

    Attributes:
        order: (M,) rows of the detection set in evaluation order (class, descending score, image,
        row).
        hoi: (M,) HOI class of each detection, in that order.
        outcome: (M,) int8, :data:`TRUE_POSITIVE` or the index of the error type in
        :data:`ERROR_TYPES`.
        npos: (C,) GT pairs per class.
        base: Default-setting result of all detections.
        without: error type -> Default-setting result without that type's false positives.
        info: file names, thresholds, counts.
    """

    order: np.ndarray
    hoi: np.ndarray
    outcome: np.ndarray
    npos: np.ndarray
    base: SettingResult
    without: dict[str, SettingResult]
    info: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.npos)

    def counts(self) -> np.ndarray:
        """(C, 1 + 9) int64: true positives then false positives of each error type, per class."""
        width = 1 + len(ERROR_TYPES)
        flat = self.hoi * width + (self.outcome.astype(np.int64) + 1)
        return np.bincount(flat, minlength=self.num_classes * width).reshape(self.num_classes,
                                                                             width)

    def rank_histogram(self, bins: int = RANK_BINS) -> np.ndarray:
        """(bins, 1 + 9) int64: detections per bin of relative rank within their class
        (rank / detections of the class, 0 = best scored), true positives then each error type."""
        m = len(self.hoi)
        per_class = np.bincount(self.hoi, minlength=self.num_classes)
        first = np.cumsum(per_class) - per_class
        rank = np.arange(m) - first[self.hoi]
        b = np.minimum(rank * bins // np.maximum(per_class[self.hoi], 1), bins - 1)
        width = 1 + len(ERROR_TYPES)
        return np.bincount(b * width + self.outcome.astype(np.int64) + 1,
                           minlength=bins * width).reshape(bins, width)

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """The JSON form: overall counts and gains, the same per split and per class (fractions)."""
        counts = self.counts()
        tp, fp = counts[:, 0], counts[:, 1:]
        missed = self.npos - tp
        base = self.base
        full_classes = np.arange(self.num_classes) if base.classes is None else base.classes
        groups = {"full": full_classes, "rare": base.rare, "non_rare": base.non_rare}

        def means(r: SettingResult) -> dict[str, float]:
            return {"full": r.full, "rare": r.rare_map, "non_rare": r.non_rare_map}

        base_raw = means(base)
        base_map = {k: _number(v) for k, v in base_raw.items()}  # an empty split has no mean: null
        gains = {t: {k: _number(v - base_raw[k]) for k,
                     v in means(self.without[t]).items()} for t in ERROR_TYPES}
        out: dict[str, Any] = dict(self.info)
        out.update({
            "map": base_map,
            "true_positives": int(tp.sum()),
            "missed": int(missed.sum()),
            "false_positives": {t: int(fp[:, k].sum()) for k, t in enumerate(ERROR_TYPES)},
            "map_gain_if_removed": gains,
        })
        # a split without a class has no mAP (null above): say why (SettingResult.empty_reason)
        out["empty_splits"] = base.empty_reasons()
        out["splits"] = {}
        for split in ("rare", "non_rare"):
            idx = groups[split]
            out["splits"][split] = {
                "num_classes": int(len(idx)),
                "map": base_map[split],
                "true_positives": int(tp[idx].sum()),
                "missed": int(missed[idx].sum()),
                "false_positives": {t: int(fp[idx, k].sum()) for k, t in enumerate(ERROR_TYPES)},
                "map_gain_if_removed": {t: gains[t][split] for t in ERROR_TYPES},
            }
        rare = np.zeros(self.num_classes, dtype=bool)
        rare[base.rare] = True
        in_mean = np.zeros(self.num_classes, dtype=bool)
        in_mean[full_classes] = True
        out["per_class"] = [{
            "hoi": c,
            "name": class_names[c] if class_names is not None else str(c),
            "rare": bool(rare[c]),
            "in_map": bool(in_mean[c]),
            "npos": int(self.npos[c]),
            "num_detections": int(counts[c].sum()),
            "ap": float(base.ap[c]),
            "true_positives": int(tp[c]),
            "missed": int(missed[c]),
            "false_positives": {t: int(fp[c, k]) for k, t in enumerate(ERROR_TYPES)},
            "ap_gain_if_removed": {t: float(self.without[t].ap[c]
                                            - base.ap[c]) for t in ERROR_TYPES},
        } for c in range(self.num_classes)]
        hist = self.rank_histogram()
        out["score_ranking"] = {"relative_rank_edges": np.linspace(0.0, 1.0,
                                                                   len(hist) + 1).tolist(),
                                "true_positive": hist[:, 0].tolist(),
                                **{t: hist[:, k + 1].tolist() for k, t in enumerate(ERROR_TYPES)}}
        return out


def _number(value: float) -> float | None:
    """``value``, or None for NaN (the mean of an empty split), which JSON cannot hold."""
    return None if np.isnan(value) else float(value)


def _points(value: float | None) -> str:
    return NO_MEAN if value is None else f"{100 * value:.2f}"


def empty_split_notes(diagnoses: Sequence[Mapping[str, Any]],
                      labels: Sequence[str] = ()) -> list[str]:
    """One line per split without a mAP in the diagnosis dicts (their ``empty_splits``), saying
    why; once for all when the dicts agree, else prefixed with each one's label."""
    per = [dict(d.get("empty_splits") or {}) for d in diagnoses]
    if all(p == per[0] for p in per):
        per, labels = per[:1], ()
    notes = []
    for k, reasons in enumerate(per):
        prefix = f"{labels[k]}: " if k < len(labels) else ""
        notes += [f"{prefix}{SPLIT_TITLES[split]} mAP is {NO_MEAN}: {why}"
                  for split, why in reasons.items()]
    return notes


def _pairs_with_image_gt(g_order: np.ndarray, g_sorted: np.ndarray,
                         image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (detection k, GT pair g) for every GT pair g in the image of each of the (K,)
    detections; ``g_order`` (P,) sorts the GT pairs by image, ``g_sorted`` (P,) their images in
    that order. Returns (det (R,), gt (R,), count (K,))."""
    start = np.searchsorted(g_sorted, image, side="left")
    count = np.searchsorted(g_sorted, image, side="right") - start
    total = int(count.sum())
    seg_start = np.cumsum(count) - count
    det = np.repeat(np.arange(len(image)), count)
    within = np.arange(total) - np.repeat(seg_start, count)
    return det, g_order[np.repeat(start, count) + within], count


def classify_false_positives(gt: GroundTruth, det: HOIResults, match: Matching,
                             iou_threshold: float = IOU_THRESHOLD, loc_min: float = LOC_MIN_IOU,
                             chunk_size: int = CLASSIFY_CHUNK) -> np.ndarray:
    """(M,) int8 outcome of every detection in ``match.order``: :data:`TRUE_POSITIVE` or the
    index of its error type (see the module docstring for the rules and their order)."""
    outcome = np.full(len(match.order), TRUE_POSITIVE, dtype=np.int8)
    fp = ~match.tp
    outcome[fp & (match.overlap >= iou_threshold)] = ERROR_TYPES.index("duplicate")
    todo = np.flatnonzero(fp & ~(match.overlap >= iou_threshold))  # positions in evaluation order
    outcome[todo] = ERROR_TYPES.index("background")
    g_order = np.argsort(gt.image_index, kind="stable")
    g_sorted = gt.image_index[g_order]
    for lo in range(0, len(todo), chunk_size):
        pos = todo[lo:lo + chunk_size]
        rows = match.order[pos]
        k, g, count = _pairs_with_image_gt(g_order, g_sorted, det.image_index[rows])
        if len(k) == 0:
            continue
        r = rows[k]
        h = iou_inclusive(det.boxes_h[r], gt.boxes_h[g])
        o = iou_inclusive(det.boxes_o[r], gt.boxes_o[g])
        same_class = gt.hoi[g] == det.hoi[r]
        same_object = gt.object[g] == det.object[r]
        h_hit, o_hit = h >= iou_threshold, o >= iou_threshold
        h_loc, o_loc = (h >= loc_min) & ~h_hit, (o >= loc_min) & ~o_hit
        both_hit = h_hit & o_hit
        bits = np.zeros(len(k), dtype=np.uint8)
        for bit, cond in ((_WRONG_VERB, ~same_class & same_object & both_hit),
                          (_WRONG_OBJECT, ~same_object & both_hit),
                          (_HUMAN_HIT, same_class & h_hit),
                          (_OBJECT_HIT, same_class & o_hit),
                          (_HUMAN_LOC, same_class & o_hit & h_loc),
                          (_OBJECT_LOC, same_class & h_hit & o_loc),
                          (_BOTH_LOC, same_class & h_loc & o_loc),
                          (_CLASS_LOC, ~same_class & (h >= loc_min) & (o >= loc_min))):
            bits |= np.where(cond, bit, np.uint8(0))
        has = count > 0
        seg = np.cumsum(count) - count
        found = np.bitwise_or.reduceat(bits, seg[has])

        def has_bit(bit: np.uint8, found: np.ndarray = found) -> np.ndarray:
            return (found & bit) > 0

        # no GT pair of class c has both boxes >= t here (else it would be a duplicate), so a
        # human hit and an object hit come from two different pairs: mis-grouping
        rules = [has_bit(_WRONG_VERB), has_bit(_WRONG_OBJECT),
                 has_bit(_HUMAN_HIT) & has_bit(_OBJECT_HIT),
                 has_bit(_HUMAN_LOC), has_bit(_OBJECT_LOC), has_bit(_BOTH_LOC), has_bit(_CLASS_LOC)]
        code = np.select(rules, [ERROR_TYPES.index(n) for n in ERROR_TYPES[1:-1]],
                         default=ERROR_TYPES.index("background"))
        outcome[pos[has]] = code
    return outcome


def diagnose(anno: Mapping[str, Any] | str | Path, detections: HOIResults,
             iou_threshold: float = IOU_THRESHOLD, classes: str = "all",
             loc_min: float = LOC_MIN_IOU) -> Diagnosis:
    """Error analysis of ``detections`` against the annotation file ``anno`` (Default setting).

    ``classes`` as in :func:`hoi.evaluation.evaluate` ("all": the official mean over every
    class; "annotated": the classes with GT pairs only). Detections are checked as the
    evaluator checks them.
    """
    if classes not in ("all", "annotated"):
        raise ValueError(f"classes must be 'all' or 'annotated', got {classes!r}")
    data = load_annotations(anno)
    gt, det, _, npos = prepare(data, detections)

    match = match_detections(gt, det, iou_threshold)
    outcome = classify_false_positives(gt, det, match, iou_threshold, loc_min)
    hoi_sorted = det.hoi[match.order]
    thresholds = recall_thresholds()
    base = setting_result(data, *per_class_ap(match.tp, hoi_sorted, npos, thresholds), npos,
                          classes)
    without = {}
    for k, name in enumerate(ERROR_TYPES):
        keep = outcome != k
        without[name] = setting_result(data, *per_class_ap(match.tp[keep], hoi_sorted[keep], npos,
                                                           thresholds),
                                       npos, classes)
    info = {"setting": "default", "iou_threshold": iou_threshold, "loc_iou_min": loc_min,
            "classes": classes,
            "num_detections": len(det), "num_gt_pairs": int(len(gt.hoi))}
    return Diagnosis(match.order, hoi_sorted, outcome, npos, base, without, info)


def without_error_type(detections: HOIResults, diagnosis: Diagnosis, error_type: str) -> HOIResults:
    """The rows of ``detections`` (the set that was diagnosed) that are not false positives
    of ``error_type``, in their original order."""
    drop = diagnosis.order[diagnosis.outcome == ERROR_TYPES.index(error_type)]
    keep = np.ones(len(detections), dtype=bool)
    keep[drop] = False
    return detections.select(keep)


def ap_changes(main: Mapping[str, Any], other: Mapping[str, Any], top: int) -> list[dict[str, Any]]:
    """The ``top`` classes (of the mean) whose AP differs most between two diagnosis dicts
    (:meth:`Diagnosis.to_dict`), largest |change| first, ties by class index."""
    a = {c["hoi"]: c for c in main["per_class"] if c["in_map"]}
    b = {c["hoi"]: c for c in other["per_class"]}
    rows = [(abs(a[c]["ap"] - b[c]["ap"]), c) for c in sorted(a) if c in b]
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [{"hoi": c, "name": a[c]["name"], "ap": a[c]["ap"], "ap_other": b[c]["ap"],
             "change": a[c]["ap"] - b[c]["ap"]} for _, c in rows[:top]]


def summary_table(main: Mapping[str, Any], other: Mapping[str, Any] | None = None,
                  labels: Sequence[str] = ("results", "compare"), markdown: bool = False) -> str:
    """A table (text or markdown) of the false positives per error type and their mAP gains
    (percentage points, Full / Rare / Non-Rare), one block of columns per diagnosis dict."""
    dicts = [main] + ([other] if other is not None else [])
    head = ["error type"]
    for label in labels[:len(dicts)]:
        head += [f"{label} FP", f"{label} +Full", f"{label} +Rare", f"{label} +NonRare"]
    body = []
    for t in ERROR_TYPES:
        row = [t]
        for d in dicts:
            g = d["map_gain_if_removed"][t]
            row += [str(d["false_positives"][t])] + [_points(g[s]) for s in SPLITS]
        body.append(row)
    extra = [["true positives"] + sum(([str(d["true_positives"]), "", "", ""] for d in dicts), []),
             ["missed GT pairs"] + sum(([str(d["missed"]), "", "", ""] for d in dicts), []),
             ["mAP (%)"] + sum((["", *(_points(d["map"][s]) for s in SPLITS)] for d in dicts), [])]
    rows = body + extra
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        notes = [f"Note: {n}" for n in empty_split_notes(dicts, labels)]
        return "\n".join(lines + ([""] + notes if notes else []))
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        cells = enumerate(zip(row, widths))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in cells)

    notes = [f"note: {n}" for n in empty_split_notes(dicts, labels)]
    return "\n".join([fmt(head), "-" * len(fmt(head))] + [fmt(r) for r in rows] + notes)
