"""``hoi info``: parameters and FLOPs (multiply-adds) of backbone configurations, or with
``--detector`` of whole COCO detectors built on them, beside the paper's numbers."""

from __future__ import annotations

import argparse
import json

from hoi.config import to_dict
from hoi.models.backbones import ARCHS, backbone_config
from hoi.models.complexity import describe, measure

HELP = "parameters and FLOPs (multiply-adds) of backbone configurations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arch", action="append", default=None, metavar="NAME",
        help=f"a named architecture; repeat or separate by commas for several "
        f"(valid: {', '.join(sorted(ARCHS))})",
    )
    parser.add_argument("--config", default=None, help="backbone YAML (configs/backbones/*.yaml)")
    parser.add_argument("--input", nargs=2, type=int, default=None, metavar=("H", "W"),
                        help="input size (default 224 224; with --detector 800 1280, as the "
                        "paper's 1280x800)")
    parser.add_argument(
        "--detector", default=None, metavar="NAME",
        help="count a whole COCO detector with each backbone (the paper's COCO placement: "
        "every bottleneck of stages 3-5): faster_rcnn, mask_rcnn, cascade_rcnn, "
        "cascade_mask_rcnn, retinanet",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config overrides, e.g. attention.stages=[4] attention.blocks=all",
    )


def run(args: argparse.Namespace) -> int:
    if args.detector is not None:
        return run_detector(args)
    if not args.arch and not args.config:
        args.arch = ["resnet50", "sac_resnet50", "gc_resnet50"]
    args.input = args.input or (224, 224)
    names = [n for arg in args.arch for n in arg.split(",") if n] if args.arch else [None]
    rows = []
    for name in names:
        cfg = backbone_config(name, args.config, args.overrides)
        c = measure(cfg, tuple(args.input))
        rows.append({
            "arch": name or str(args.config),
            "depth": cfg.depth,
            "attention": describe(cfg),
            "params": c.params,
            "flops": c.flops,
            "flops_paper_order": c.flops_paper_order,
            "input": list(c.input_size),
            "config": to_dict(cfg),
        })
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0
    h, w = args.input
    header = (f"{'arch':<16} {'attention':<44} {'params':>9} {'FLOPs':>8} "
              f"{'FLOPs (Eq.5 as written)':>24}")
    print(f"input {h}x{w}; FLOPs are multiply-adds")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['arch']:<16} {r['attention']:<44} {r['params'] / 1e6:>8.3f}M "
            f"{r['flops'] / 1e9:>7.3f}G {r['flops_paper_order'] / 1e9:>23.3f}G"
        )
    return 0


def run_detector(args: argparse.Namespace) -> int:
    """``hoi info --detector NAME``: whole-detector params and FLOPs beside the paper's."""
    from hoi.detection.complexity import FlopSettings, measure_detector
    from hoi.detection.config import DETECTORS, backbone_config_of, detector_cfg
    from hoi.detection.paper import paper_row_of

    DETECTORS.check(args.detector)
    if not args.arch and not args.config:
        args.arch = ["resnet50", "se_resnet50", "cbam_resnet50", "gc_resnet50", "sac_resnet50"]
    names = [n for arg in args.arch for n in arg.split(",") if n] if args.arch else [None]
    h, w = args.input or (FlopSettings.height, FlopSettings.width)
    settings = FlopSettings(height=h, width=w)
    rows = []
    for name in names:
        opts = ["MODEL.HOI_BACKBONE.ARCH", name or "",
                "MODEL.HOI_BACKBONE.CONFIG_FILE", str(args.config or ""),
                "MODEL.HOI_BACKBONE.OVERRIDES", list(args.overrides)]
        cfg = detector_cfg(args.detector, opts=opts)
        backbone = backbone_config_of(cfg)
        canonical = (to_dict(backbone_config_of(detector_cfg(args.detector, arch=name)))
                     if name else {})
        paper = paper_row_of(args.detector, name, to_dict(backbone), canonical)
        c = measure_detector(cfg, settings)
        rows.append({
            "detector": args.detector,
            "arch": name or str(args.config),
            "attention": describe(backbone),
            "params": c.params,
            "params_detectron2": c.params_detectron2,
            "params_trainable": c.params_trainable,
            "flops": c.flops,
            "flops_paper_order": c.flops_paper_order,
            "flops_parts": c.flops_parts,
            "input": [h, w],
            "paper": None if paper is None else {"table": paper.table,
                                                 "params": paper.params_m * 1e6,
                                                 "flops": paper.flops_g * 1e9},
            "config": to_dict(backbone),
        })
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
        return 0
    print(f"{args.detector}, input {w}x{h}; params counted as mmdetection does (frozen BN affine "
          f"included); FLOPs are multiply-adds of convolutions and matrix products")
    header = (f"{'arch':<16} {'attention':<40} {'params':>9} {'paper':>7} {'FLOPs':>8} "
              f"{'(Eq.5 as written)':>18} {'paper':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        p = r["paper"]
        paper_params = f"{p['params'] / 1e6:.1f}M" if p else "-"
        paper_flops = f"{p['flops'] / 1e9:.1f}G" if p else "-"
        print(f"{r['arch']:<16} {r['attention']:<40} {r['params'] / 1e6:>8.2f}M "
              f"{paper_params:>7} {r['flops'] / 1e9:>7.1f}G "
              f"{r['flops_paper_order'] / 1e9:>17.1f}G {paper_flops:>8}")
    return 0
