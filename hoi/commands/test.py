"""``hoi test``: run a trained VSGNet checkpoint over a split's cached features and write
the HOI detections file (score it with ``hoi eval``)."""

from __future__ import annotations

import argparse

HELP = "HOI detections of a trained VSGNet checkpoint on a split (results .npz/.h5 for hoi eval)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pth or checkpoint.pth of a hoi train run")
    parser.add_argument("--split", default=None, help="split name (default: the run's data.test_split)")
    parser.add_argument("--out", required=True, help="results file, .npz or .h5")
    parser.add_argument("--anno", default=None, help="annotation file (default: from the run's config)")
    parser.add_argument("--detections", default=None, help="detections file (default: from the run's config)")
    parser.add_argument("--features", default=None, help="features file (default: from the run's config)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per process (default: test.batch_size)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: data.workers)")
    parser.add_argument("--device", default=None, help="auto, cuda or cpu (default: the run's)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="use caches whose provenance does not match the annotation or the checkpoint's "
                             "training features anyway (recorded in the results file)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. data.root=/data/hico test.min_score=0.01")


def run(args: argparse.Namespace) -> int:
    from hoi.engine.distributed import distributed
    from hoi.inference.test_split import run_test, test_config

    cfg = test_config(args)
    with distributed(cfg.device, cfg.dist_timeout_s) as dist:
        run_test(cfg, args, dist)
    return 0
