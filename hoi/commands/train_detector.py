"""``hoi train-detector``: train and evaluate a COCO detector with an attention ResNet backbone
(the paper's Tables V-VII), as Detectron2's ``tools/train_net.py`` does.

    hoi train-detector --detector mask_rcnn --arch sac_resnet50 \\
        --backbone-weights checkpoints/resnet50.pth --output runs/coco/mask_rcnn_sac_resnet50
    hoi train-detector --config runs/coco/mask_rcnn_sac_resnet50/config.yaml --resume
    hoi train-detector --config RUN/config.yaml --eval-only MODEL.WEIGHTS RUN/model_final.pth

Data: Detectron2's ``coco_2017_train`` / ``coco_2017_val`` (under ``$DETECTRON2_DATASETS``,
``coco/annotations`` and ``coco/{train,val}2017``) unless ``--train-json``/``--train-images``
and ``--val-json``/``--val-images`` name COCO-format files. Several GPUs: ``torchrun``
(``scripts/train_detector.sh NGPU ...``) or ``--num-gpus N`` (Detectron2's launcher).
"""

from __future__ import annotations

import argparse
import json
import os

HELP = "train / evaluate a COCO detector (Faster/Mask/Cascade R-CNN, RetinaNet) with SAC, GC, ..."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", default=None,
                        help="faster_rcnn | mask_rcnn | cascade_rcnn | cascade_mask_rcnn | "
                        "retinanet (configs/coco/<name>.yaml)")
    parser.add_argument("--arch", default=None,
                        help="backbone, e.g. resnet50, sac_resnet50, gc_resnet101 (placed in "
                        "every bottleneck of stages 3-5)")
    parser.add_argument("--config", default=None,
                        help="Detectron2 YAML over the detector's (or a complete config.yaml)")
    parser.add_argument("--backbone-weights", default=None, metavar="FILE",
                        help="ImageNet backbone (hoi export-backbone file or torchvision's "
                        "resnet50-*.pth); MODEL.HOI_BACKBONE.WEIGHTS")
    parser.add_argument("--output", default=None, help="OUTPUT_DIR (checkpoints, metrics, logs)")
    for split in ("train", "val"):
        parser.add_argument(f"--{split}-json", default=None, help=f"COCO instances of {split}")
        parser.add_argument(f"--{split}-images", default=None, help=f"image folder of {split}")
    parser.add_argument("--resume", action="store_true",
                        help="resume from OUTPUT_DIR/last_checkpoint")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes on this machine (Detectron2's launcher); under "
                        "torchrun leave it at 1")
    parser.add_argument("--dist-url", default="auto", help="Detectron2 launcher's URL")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="Detectron2 config overrides, e.g. SOLVER.IMS_PER_BATCH 16")


def build_cfg(args: argparse.Namespace):
    """The frozen Detectron2 config the arguments describe (datasets registered)."""
    from hoi.detection.config import detector_cfg
    from hoi.detection.train import CocoSplit, register_split

    cfg = detector_cfg(args.detector, args.arch, args.config, args.opts)
    if args.backbone_weights is not None:
        cfg.MODEL.HOI_BACKBONE.WEIGHTS = args.backbone_weights
    if args.output is not None:
        cfg.OUTPUT_DIR = args.output
    for split, key in (("train", "TRAIN"), ("val", "TEST")):
        json_file, images = getattr(args, f"{split}_json"), getattr(args, f"{split}_images")
        if (json_file is None) != (images is None):
            from hoi.config import ConfigError

            raise ConfigError(f"--{split}-json and --{split}-images go together")
        if json_file is not None:
            name = register_split(CocoSplit(f"hoi_coco_{split}", json_file, images))
            setattr(cfg.DATASETS, key, (name,))
    if args.eval_only and cfg.MODEL.WEIGHTS:
        cfg.MODEL.HOI_BACKBONE.WEIGHTS = ""  # the detector's checkpoint holds the backbone
    cfg.freeze()
    return cfg


def main_worker(args: argparse.Namespace) -> dict:
    from hoi.detection.train import evaluate, flatten_results, init_torchrun, setup_run, train

    init_torchrun()
    cfg = build_cfg(args)
    setup_run(cfg)
    results = evaluate(cfg) if args.eval_only else train(cfg, args.resume)[1]
    if int(os.environ.get("RANK", "0")) == 0 and results:
        print(json.dumps(dict(flatten_results(results)), indent=2))
    return results


def run(args: argparse.Namespace) -> int:
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    if args.num_gpus > 1:
        from hoi.detectron2_compat import import_detectron2

        import_detectron2()
        from detectron2.engine import launch

        launch(main_worker, args.num_gpus, dist_url=args.dist_url, args=(args,))
        return 0
    main_worker(args)
    return 0
