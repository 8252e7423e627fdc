"""``hoi export-backbone CKPT OUT``: the backbone weights of a pretraining checkpoint, in the
form the feature extractor loads, with a sha256 recorded beside them."""

from __future__ import annotations

import argparse
import sys

HELP = "write a pretraining checkpoint's backbone weights for the feature extractor (+ sha256)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint.pth written by `hoi "
                                                           "pretrain`")
    parser.add_argument("out", metavar="OUT", help="file to write, e.g. "
                                                   "weights/sac_resnet50_imagenet.pth")


def run(args: argparse.Namespace) -> int:
    from hoi.config import ConfigError
    from hoi.engine.checkpoint import CheckpointError
    from hoi.pretrain.export import export_backbone

    try:
        out, digest = export_backbone(args.checkpoint, args.out)
    except (CheckpointError, ConfigError) as err:
        print(f"hoi export-backbone: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}\nsha256 {digest}  (recorded in {out}.sha256)")
    return 0
