"""``hoi eval``: official HICO-DET mAP (Full / Rare / Non-Rare; Default and Known-Object)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

HELP = ("HICO-DET mAP of a results file (official protocol), and export to the official MATLAB "
        "layout")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hoi.evaluation.hico_det import IOU_THRESHOLD
    from hoi.evaluation.matlab import LAYOUTS

    parser.add_argument("--anno", required=True, help="instances_test2015.json "
                                                      "(docs/architecture.md#annotation-files)")
    parser.add_argument("--detections", required=True,
                        help="results: .npz / .h5 (docs/architecture.md#results-files), a MATLAB "
                             "detections.mat (all_boxes "
                             "600 x N), or a directory of the 80 detections_XX.mat files")
    parser.add_argument("--setting", choices=("default", "known_object", "both"), default="both")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="write the results "
                                                                               "as JSON")
    parser.add_argument("--per-class", type=Path, default=None, metavar="CSV",
                        help="write per-class AP and recall")
    parser.add_argument("--classes", choices=("all", "annotated"), default="all",
                        help="mAP over all 600 classes (official) or only those with GT pairs in "
                             "--anno")
    parser.add_argument("--iou", type=float, default=IOU_THRESHOLD, help="minimum min(IoU_h, "
                                                                         "IoU_o) of a match")
    parser.add_argument("--anno-mat", type=Path, default=None,
                        help="official anno.mat: take the Known-Object image sets from its "
                             "image-level "
                             "labels, as the official code does (default: from the GT boxes)")
    parser.add_argument("--export-matlab", type=Path, default=None, metavar="DIR",
                        help="also write the detections in the official MATLAB layout (0-based "
                             "boxes)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="score results whose recorded annotation fingerprint differs from "
                             "--anno anyway (the mismatch is recorded in --json)")
    parser.add_argument("--matlab-layout", choices=LAYOUTS, default="per_object",
                        help="layout of --export-matlab: 80 detections_XX.mat files or one "
                             "detections.mat")


def run(args: argparse.Namespace) -> int:
    from hoi.data.anno_mat import read_image_labels
    from hoi.data.metadata import hico_metadata
    from hoi.data.validation import load_valid_annotations
    from hoi.evaluation import HOIResults, evaluate, known_object_images_from_labels
    from hoi.evaluation.joins import results_for_annotation
    from hoi.evaluation.matlab import export_matlab, read_matlab

    data = load_valid_annotations(args.anno)
    meta = hico_metadata()
    num_images = len(data["filenames"])
    path = Path(args.detections)
    if path.is_dir() or path.suffix == ".mat":
        detections = read_matlab(path, num_images)
    else:
        detections = HOIResults.load(path)
    ordered, accepted = results_for_annotation(detections, path, args.anno, data,
                                               args.allow_mismatch)
    ko_images = None
    if args.anno_mat is not None:
        ko_images = known_object_images_from_labels(read_image_labels(args.anno_mat, "test"),
                                                    meta.hoi_object, len(meta.objects))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(data, ordered, args.setting, iou_threshold=args.iou, ko_images=ko_images,
                          classes=args.classes)
    for w in caught:
        print(f"warning: {w.message}")
    print(f"{args.detections}: {len(detections)} detections, {result.info['num_gt_pairs']} GT "
          f"pairs, {num_images} images; mAP in percent")
    print(result.table())
    if args.json is not None:
        result.info.update({"anno": str(args.anno), "detections": str(args.detections),
                            "accepted_mismatches": accepted})
        result.save_json(args.json)
        print(f"wrote {args.json}")
    if args.per_class is not None:
        result.save_per_class_csv(args.per_class, meta.hoi_names)
        print(f"wrote {args.per_class}")
    if args.export_matlab is not None:
        files = export_matlab(ordered, num_images,
                              args.export_matlab, args.matlab_layout)
        print(f"wrote {len(files)} MATLAB file(s) to {args.export_matlab}")
    return 0
