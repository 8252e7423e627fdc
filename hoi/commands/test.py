"""``hoi test``: run a trained checkpoint (its interaction head) over a split's cached features
and write the HOI detections file (score it with ``hoi eval``)."""

from __future__ import annotations

import argparse

HELP = "HOI detections of a trained checkpoint on a split (results .npz/.h5 for hoi eval)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pth or checkpoint.pth of a hoi "
                                                            "train run")
    parser.add_argument("--split", default=None, help="split name (default: the run's "
                                                      "data.test_split)")
    parser.add_argument("--out", required=True, help="results file, .npz or .h5")
    parser.add_argument("--anno", default=None, help="annotation file (default: from the run's "
                                                     "config)")
    parser.add_argument("--detections", default=None, help="detections file (default: from the "
                                                           "run's config)")
    parser.add_argument("--features", default=None, help="features file (default: from the run's "
                                                         "config)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per process (default: "
                                                                     "test.batch_size)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: "
                                                                  "data.workers)")
    parser.add_argument("--device", default=None, help="auto, cuda or cpu (default: the run's)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="use caches whose provenance does not match the annotation or the "
                             "checkpoint's training features anyway (recorded in the results file)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. data.root=/data/hico test.min_score=0.01")


def run(args: argparse.Namespace) -> int:
    from hoi.engine.checkpoint import load_checkpoint
    from hoi.engine.distributed import distributed
    from hoi.engine.run_lock import hold_run_lock
    from hoi.hoi_config import config_of_checkpoint
    from hoi.inference.test_split import run_test

    overrides = list(args.overrides)
    for flag, key in ((args.batch_size, "test.batch_size"), (args.workers, "data.workers"),
                      (args.device, "device")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.allow_mismatch:
        overrides.append("data.allow_mismatch=true")
    ckpt = load_checkpoint(args.checkpoint)
    cfg = config_of_checkpoint(ckpt, args.checkpoint, overrides)
    with (distributed(cfg.device, cfg.dist_timeout_s) as dist,
          hold_run_lock(args.out, "hoi test", folder=False, dist=dist)):  # one run per --out
        run_test(cfg, ckpt, args.checkpoint, args.out, dist, split=args.split,
                 annotations=args.anno,
                 detections=args.detections, features=args.features)
    return 0
