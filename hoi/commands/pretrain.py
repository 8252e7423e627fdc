"""``hoi pretrain``: ImageNet classification training of a backbone (SAC paper, Sec. IV-B).

One process: ``hoi pretrain --config configs/imagenet/sac_resnet50.yaml``. Several GPUs or
machines: the same command under ``torchrun`` (``scripts/pretrain_imagenet.sh``).
"""

from __future__ import annotations

import argparse

HELP = "ImageNet classification training of a backbone (run under torchrun for several GPUs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML file (configs/imagenet/*.yaml)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume", action="store_true",
        help="continue from OUTPUT_DIR/checkpoint.pth (refused if it is another architecture)",
    )
    group.add_argument("--resume-from", default=None, metavar="CKPT", help="continue from this "
                                                                           "checkpoint")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config overrides, e.g. data.root=/data/imagenet optim.epochs=90 arch=gc_resnet50",
    )


def run(args: argparse.Namespace) -> int:
    # imported here so that `hoi pretrain --help` stays fast
    from hoi.engine.distributed import distributed
    from hoi.engine.run_lock import locks_released_at_exit
    from hoi.pretrain.pretrain_config import load_pretrain_config
    from hoi.pretrain.train_backbone import default_checkpoint, run_pretraining

    cfg = load_pretrain_config(args.config, args.overrides)
    resume = args.resume_from or (default_checkpoint(cfg) if args.resume else None)
    # the run holds output_dir's lock from its start (hoi.engine.run_lock); it is let go here
    # however the run ends
    with distributed(cfg.device, cfg.dist_timeout_s) as dist, locks_released_at_exit():
        run_pretraining(cfg, dist, resume)
    return 0
