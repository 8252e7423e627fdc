"""``hoi train``: train the VSGNet heads on cached HICO-DET features (one process, or one of
several under torchrun)."""

from __future__ import annotations

import argparse

from ..engine.distributed import cleanup, init_distributed

HELP = "train the VSGNet interaction heads on cached features (Table XI runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run YAML (configs/hico/*.yaml)")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                        help="continue a run: from CKPT, or from output_dir/checkpoint.pth when no path is given")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.epochs=10 output_dir=runs/x")


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_config
    from ..training.trainer import CHECKPOINT_NAME, run_training

    cfg = load_config(args.config, args.overrides)
    resume = args.resume
    if resume == "auto":
        from pathlib import Path

        resume = Path(cfg.output_dir) / CHECKPOINT_NAME
    dist = init_distributed(cfg.device, cfg.dist_timeout_s)
    try:
        run_training(cfg, dist, resume)
    finally:
        cleanup()
    return 0
