"""``hoi info``: parameters and FLOPs (multiply-adds) of backbone configurations."""

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
    parser.add_argument("--input", nargs=2, type=int, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config overrides, e.g. attention.stages=[4] attention.blocks=all",
    )


def run(args: argparse.Namespace) -> int:
    if not args.arch and not args.config:
        args.arch = ["resnet50", "sac_resnet50", "gc_resnet50"]
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
