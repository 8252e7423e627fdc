"""``hoi predict``: a trained run on new images (no annotation): detections, the run's
backbone rebuilt from its recorded provenance, the heads, and drawings of the top HOIs."""

from __future__ import annotations

import argparse

HELP = "HOI detections of a trained run on new images (predictions.json + one drawing per image)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hoi.detector import DEFAULT_CONFIG

    parser.add_argument("--checkpoint", required=True, help="best.pth or checkpoint.pth of a hoi "
                                                            "train run")
    parser.add_argument("--images", required=True, nargs="+", metavar="DIR_OR_FILE",
                        help="image files, or folders whose images are all taken")
    parser.add_argument("--out", required=True, help="folder for predictions.json and the drawings")
    parser.add_argument("--device", default=None, help="auto, cuda or cpu (default: the run's)")
    parser.add_argument("--top-k", type=int, default=5, help="HOIs kept per image, best first")
    parser.add_argument("--score-thresh", type=float, default=0.1, help="lowest HOI score kept")
    parser.add_argument("--detections", default=None,
                        help="a detections file (data_prep.detect format) holding these images, "
                             "instead of Detectron2; refused if an image is not the one they were "
                             "made for (another size, e.g. a resized copy)")
    parser.add_argument("--detector-config", default=DEFAULT_CONFIG, help="model-zoo config name "
                                                                          "or a local YAML")
    parser.add_argument("--detector-weights", default=None,
                        help="detector weights file; default: the model zoo's (needs network); "
                             "'none': random")
    parser.add_argument("--detector-score-thresh", type=float, default=0.05)
    parser.add_argument("--detector-max-per-image", type=int, default=100)
    parser.add_argument("--detector-min-size", type=int, default=None, help="test-time short side "
                                                                            "(default 800)")
    parser.add_argument("--detector-max-size", type=int, default=None, help="test-time long-side "
                                                                            "cap (default 1333)")
    parser.add_argument("--backbone-weights", default=None, metavar="FILE",
                        help="the backbone file, where the one recorded by the run is not at its "
                             "recorded path (checked by its sha256)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="use a backbone file whose sha256 is not the one the run recorded "
                             "anyway (recorded in predictions.json and the results file)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="run config overrides, e.g. test.min_score=0.01")


def run(args: argparse.Namespace) -> int:
    from hoi.detector import DetectorSettings
    from hoi.engine.checkpoint import load_checkpoint
    from hoi.engine.distributed import distributed
    from hoi.engine.run_lock import hold_run_lock
    from hoi.hoi_config import config_of_checkpoint
    from hoi.inference.predict_images import predict_images

    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device is not None
                                        else [])
    if args.allow_mismatch:
        overrides.append("data.allow_mismatch=true")
    ckpt = load_checkpoint(args.checkpoint)
    cfg = config_of_checkpoint(ckpt, args.checkpoint, overrides)
    detector = None if args.detections else DetectorSettings(
        args.detector_config, args.detector_weights, args.detector_score_thresh,
        max_per_image=args.detector_max_per_image, min_size=args.detector_min_size,
        max_size=args.detector_max_size, weights_flag="--detector-weights")
    with (distributed(cfg.device, cfg.dist_timeout_s) as dist,
          hold_run_lock(args.out, "hoi predict", dist=dist)):  # one run per --out folder
        predict_images(cfg, ckpt, args.checkpoint, args.images, args.out, dist, detector=detector,
                       proposals=args.detections, top_k=args.top_k, score_thresh=args.score_thresh,
                       backbone_weights=args.backbone_weights, batch_size=args.batch_size,
                       workers=args.workers, allow_mismatch=args.allow_mismatch)
    return 0
