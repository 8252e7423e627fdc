"""``hoi train``: train an interaction head (VSGNet by default) on cached HICO-DET features (one
process, or one of several under torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hoi.engine.distributed import distributed

HELP = "train the interaction heads (model.name, default VSGNet) on cached features (Table XI runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run YAML (configs/hico/*.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in output_dir from its checkpoint.pth")
    parser.add_argument("--resume-from", default=None, metavar="CKPT",
                        help="continue from this checkpoint (written into output_dir from then on)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="use caches whose provenance does not match the annotation file or "
                             "the run's backbone anyway (recorded in the checkpoint); the same as "
                             "data.allow_mismatch=true")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.epochs=10 output_dir=runs/x")


def run(args: argparse.Namespace) -> int:
    from hoi.engine.loop import CHECKPOINT_NAME
    from hoi.engine.run_lock import locks_released_at_exit
    from hoi.hoi_config import load_config
    from hoi.training.train_heads import run_training

    overrides = list(args.overrides) + (["data.allow_mismatch=true"] if args.allow_mismatch
                                        else [])
    cfg = load_config(args.config, overrides)
    resume = args.resume_from
    if args.resume and resume is None:
        resume = Path(cfg.output_dir) / CHECKPOINT_NAME
    # the run holds output_dir's lock from its start (hoi.engine.run_lock); it is let go here
    # however the run ends
    with distributed(cfg.device, cfg.dist_timeout_s) as dist, locks_released_at_exit():
        run_training(cfg, dist, resume)
    return 0
