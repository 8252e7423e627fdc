"""The ``hoi`` command: one subcommand per job, each in its own module of ``hoi.commands``.

A subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Errors caused by bad input (:class:`hoi.errors.UserError`,
ValueError, FileNotFoundError, a full disk) are printed as one line, ``error: ...``, with exit
status 2 (``--debug`` anywhere on the command line, or ``HOI_DEBUG=1``, for the traceback). Modules
are imported only when their subcommand runs, so ``hoi info``
does not pay for importing Detectron2 or h5py.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hoi.errors import run_main

COMMANDS: dict[str, str] = {
    "pretrain": "hoi.commands.pretrain",
    "export-backbone": "hoi.commands.export_backbone",
    "train": "hoi.commands.train",
    "test": "hoi.commands.test",
    "eval": "hoi.commands.eval",
    "diagnose": "hoi.commands.diagnose",
    "predict": "hoi.commands.predict",
    "vis": "hoi.commands.vis",
    "info": "hoi.commands.info",
    "train-detector": "hoi.commands.train_detector",
    "env": "hoi.commands.env",
}
# One-line summaries for `hoi --help`, so that listing the commands imports none of them.
SUMMARIES: dict[str, str] = {
    "pretrain": "ImageNet(-style) classification training of a backbone (paper's recipe)",
    "export-backbone": "write a pretraining checkpoint's backbone weights for the extractor",
    "train": "train the VSGNet interaction heads on cached features",
    "test": "HOI detections of a trained model on a split (results file)",
    "eval": "official HICO-DET mAP (Full/Rare/Non-Rare, Default and Known-Object)",
    "diagnose": "HOI error analysis: false positives by type and the mAP each type costs",
    "predict": "HOI detections of a trained run on new images (drawings + predictions.json)",
    "vis": "pictures: HOI detections, SAC attention maps, beta similarity, PR curves",
    "info": "parameters and FLOPs of backbone configurations (--detector: whole detectors)",
    "train-detector": "train / evaluate a COCO detector with an attention backbone (Tables V-VII)",
    "env": "versions of Python, PyTorch/CUDA, Detectron2, ... for bug reports",
}


def _load(name: str):
    return importlib.import_module(COMMANDS[name])


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, str | None]:
    parser = argparse.ArgumentParser(
        prog="hoi",
        description="HOI detection on HICO-DET with Spatially-Aware Context backbones.",
        epilog="Any command takes --debug: show the traceback of an error instead of one line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name in COMMANDS:
        if name == wanted:
            module = _load(name)
            cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(cmd)
        else:  # list it without importing it
            sub.add_parser(name, help=SUMMARIES.get(name, f"see 'hoi {name} --help'"),
                           add_help=False)
    return parser, wanted if wanted in COMMANDS else None


def _main(argv: list[str]) -> int:
    parser, command = build_parser(argv)
    args = parser.parse_args(argv)
    if command is None:
        parser.print_help()
        return 2 if argv else 0
    from hoi.engine.memory import fix_mmap_threshold

    fix_mmap_threshold()  # flat resident memory over long runs (hoi/engine/memory.py)
    return int(_load(command).run(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
