"""``hoi diagnose``: why a results file scores its mAP (HOI error types, TIDE-style)."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

HELP = "HOI error analysis of a results file: false positives by type and the mAP each type costs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hoi.evaluation.diagnose import LOC_MIN_IOU
    from hoi.evaluation.hico_det import IOU_THRESHOLD
    from hoi.vis.diagnosis_plots import TOP_CLASSES

    parser.add_argument("--anno", required=True, help="instances_test2015.json "
                                                      "(docs/architecture.md#annotation-files)")
    parser.add_argument("--detections", required=True, help="results file .npz / .h5 "
                                                            "(docs/architecture.md#results-files)")
    parser.add_argument("--compare", default=None, metavar="RESULTS",
                        help="a second results file, diagnosed too and drawn beside the first")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="writes diagnosis.json, diagnosis.md and the PNG pictures")
    parser.add_argument("--classes", choices=("all", "annotated"), default="all",
                        help="mAP over all 600 classes (official) or only those with GT pairs in "
                             "--anno")
    parser.add_argument("--iou", type=float, default=IOU_THRESHOLD, help="minimum min(IoU_h, "
                                                                         "IoU_o) of a match")
    parser.add_argument("--loc-iou", type=float, default=LOC_MIN_IOU,
                        help="minimum IoU of a mislocalised box (below it: elsewhere)")
    parser.add_argument("--labels", nargs=2, default=None, metavar=("MAIN", "OTHER"),
                        help="names of the two files in tables and pictures (default: their file "
                             "names)")
    parser.add_argument("--top", type=int, default=TOP_CLASSES,
                        help="classes shown in the comparison picture (largest AP change)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="diagnose results whose recorded annotation fingerprint differs from "
                             "--anno anyway (the mismatch is recorded in diagnosis.json)")


def _diagnose(data: dict, path: str, args: argparse.Namespace, class_names) -> dict:
    """Diagnosis dict of one results file, checked at the join as ``hoi eval`` checks it."""
    from hoi.evaluation import HOIResults
    from hoi.evaluation.diagnose import diagnose
    from hoi.evaluation.joins import results_for_annotation

    detections = HOIResults.load(path)
    ordered, accepted = results_for_annotation(detections, path, args.anno, data,
                                               args.allow_mismatch)
    with warnings.catch_warnings():  # the evaluator's warnings are printed by `hoi eval`
        warnings.simplefilter("ignore")
        result = diagnose(data, ordered, iou_threshold=args.iou, classes=args.classes,
                          loc_min=args.loc_iou)
    out = result.to_dict(class_names)
    out.update({"anno": str(args.anno), "detections": str(path), "accepted_mismatches": accepted})
    return out


def run(args: argparse.Namespace) -> int:
    from hoi.data.metadata import hico_metadata
    from hoi.data.validation import load_valid_annotations
    from hoi.errors import UserError
    from hoi.evaluation.diagnose import ap_changes, summary_table
    from hoi.vis.diagnosis_plots import save_diagnosis_figures

    if not 0 < args.loc_iou < args.iou <= 1:
        raise UserError(f"--loc-iou {args.loc_iou} and --iou {args.iou}: expected 0 < --loc-iou < "
                        "--iou <= 1")
    if args.top < 1:
        raise UserError(f"--top {args.top}: expected at least 1 class")
    data = load_valid_annotations(args.anno)
    names = hico_metadata().hoi_names
    labels = args.labels or [Path(args.detections).stem] + ([Path(args.compare).stem]
                                                            if args.compare else ["compare"])
    main = _diagnose(data, args.detections, args, names)
    other = _diagnose(data, args.compare, args, names) if args.compare else None
    report = dict(main)
    changes = []
    if other is not None:
        changes = ap_changes(main, other, args.top)
        report["compare"] = {"labels": list(labels), "diagnosis": other, "ap_change_most": changes}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diagnosis.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    table = summary_table(main, other, labels)
    (args.out / "diagnosis.md").write_text(summary_table(main, other, labels, markdown=True) + "\n",
                                           encoding="utf-8")
    written = save_diagnosis_figures(main, args.out, other, changes, labels)
    print(f"{args.detections}: {main['num_detections']} detections, {main['num_gt_pairs']} GT "
          "pairs; "
          "Default setting; false positives per error type and the mAP gain (points) if removed")
    print(table)
    for path in [args.out / "diagnosis.json", args.out / "diagnosis.md", *written]:
        print(f"wrote {path}")
    return 0
