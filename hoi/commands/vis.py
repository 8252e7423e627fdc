"""``hoi vis``: pictures as PNG files: HOI detections on images, SAC attention and norm maps
(paper Fig. 4, 5), beta cosine-similarity histograms (Fig. 3), precision-recall curves."""

from __future__ import annotations

import argparse

HELP = "draw HOI detections, SAC attention/norm maps, beta similarities (paper Fig. 3-5), PR curves"


def _add_backbone(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", required=True, metavar="ARCH|YAML",
                   help="arch name (e.g. sac_resnet50) or a backbone YAML "
                        "(configs/backbones/*.yaml)")
    p.add_argument("--weights", required=True, metavar="FILE|torchvision|none",
                   help="backbone weights; 'none' = random init (SAC blocks then start as the "
                        "identity)")
    p.add_argument("--non-strict", action="store_true", help="load only the weights whose names "
                                                             "match")
    p.add_argument("--image", action="extend", nargs="+", required=True, metavar="IMG",
                   help="image file(s); repeat or list several")
    p.add_argument("--input-size", nargs=2, type=int, default=(400, 400), metavar=("H", "W"),
                   help="backbone input size (the whole image resized, as in VSGNet)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="MODE", required=True)

    p = sub.add_parser("detections",
                       help="HOI detections drawn on their images (one PNG per image)")
    p.add_argument("--results", required=True, help="results file .npz / .h5 "
                                                    "(docs/architecture.md#results-files)")
    p.add_argument("--images", required=True, metavar="DIR", help="folder holding the images")
    p.add_argument("--anno", default=None, help="instances JSON: also draw its GT pairs (dashed, "
                                                "green)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--top", type=int, default=5, help="pairs per image, best scores first")
    p.add_argument("--min-score", type=float, default=0.1)
    p.add_argument("--max-images", type=int, default=8)
    p.add_argument("--scale", type=float, default=None,
                   help="output size / image size (default: small images enlarged to 640 px)")

    p = sub.add_parser("attention", help="SAC attention maps alpha (Fig. 4) and norm maps (Fig. 5)")
    _add_backbone(p)
    p.add_argument("--out", required=True, metavar="DIR")

    p = sub.add_parser("beta-similarity", help="cos(beta_i, beta_j) histograms with/without "
                                               "softmax (Fig. 3)")
    _add_backbone(p)
    p.add_argument("--out", required=True, metavar="FILE", help="PNG file to write")
    p.add_argument("--max-positions", type=int, default=1024, help="positions sampled per image "
                                                                   "and block")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("pr", help="precision-recall curves per HOI class with their 11-point AP")
    p.add_argument("--anno", required=True, help="instances JSON "
                                                 "(docs/architecture.md#annotation-files)")
    p.add_argument("--results", required=True, help="results file .npz / .h5 "
                                                    "(docs/architecture.md#results-files)")
    p.add_argument("--out", required=True, metavar="DIR")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--classes", type=int, nargs="+", default=None, metavar="HOI",
                       help="HOI indices 0..599")
    group.add_argument("--top", type=int, default=6, help="the N classes with the most GT pairs")
    p.add_argument("--setting", choices=("default", "known_object"), default="default")


def _backbone(args: argparse.Namespace):
    from hoi.vis.attention import load_sac_backbone

    model = load_sac_backbone(args.backbone, args.weights, strict=not args.non_strict)
    if args.weights == "none":
        print("note: --weights none: random weights; the SAC blocks are the identity (||Z - X|| = "
              "0)")
    return model


def run(args: argparse.Namespace) -> int:
    if args.mode == "detections":
        from hoi.vis.hoi_drawing import save_detection_images

        written = save_detection_images(args.results, args.images, args.out, anno=args.anno,
                                        top=args.top,
                                        min_score=args.min_score, max_images=args.max_images,
                                        scale=args.scale)
    elif args.mode == "attention":
        from hoi.vis.attention import save_attention_maps

        written = save_attention_maps(_backbone(args), args.image, args.out, tuple(args.input_size))
    elif args.mode == "beta-similarity":
        from hoi.vis.attention import save_beta_similarity

        written = save_beta_similarity(_backbone(args), args.image, args.out,
                                       tuple(args.input_size),
                                       args.max_positions, args.seed)
    else:
        from hoi.vis.pr_plots import save_pr_curves

        written = save_pr_curves(args.anno, args.results, args.out, classes=args.classes,
                                 top=args.top,
                                 setting=args.setting)
    for path in written:
        print(f"wrote {path}")
    return 0
