"""``hoi export-backbone CKPT OUT``: the backbone weights of a pretraining checkpoint, in the
form the feature extractor loads, with a sha256 recorded beside them (written as one unit: a
kill leaves the old pair or the new one)."""

from __future__ import annotations

import argparse

HELP = "write a pretraining checkpoint's backbone weights for the feature extractor (+ sha256)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint.pth written by `hoi "
                                                           "pretrain`")
    parser.add_argument("out", metavar="OUT", help="file to write, e.g. "
                                                   "weights/sac_resnet50_imagenet.pth")


def run(args: argparse.Namespace) -> int:
    from hoi.pretrain.export import export_backbone

    # errors (a bad checkpoint, NaN weights, another export writing OUT) end in one line through
    # hoi.errors.run_main, as in every command
    out, digest = export_backbone(args.checkpoint, args.out)
    print(f"wrote {out}\nsha256 {digest}  (recorded in {out}.sha256)")
    return 0
