"""Feature cache: the frozen (SAC-)ResNet's layer3 map of every image, in HDF5.

    python -m data_prep.extract --images DIR --anno instances_X.json \
        --backbone sac_resnet50|configs/backbones/X.yaml --weights FILE --out features_X.h5
    torchrun --nproc_per_node 4 -m data_prep.extract ...        # sharded over GPUs/machines

Each image is resized to ``--input-size`` (VSGNet's 400x400 by default), normalised with the
ImageNet mean/std and passed through the backbone up to ``--stage`` (4 = torchvision's layer3:
stride 16, 1024 channels). Maps are stored as float16, one image per chunk, with a done flag
per image: a killed run resumes where it stopped and recomputes no finished image. Under
torchrun every rank writes its own share to a part file and rank 0 merges them.
``--weights none`` runs a randomly initialised backbone (smoke tests only), seeded by
``--seed`` and recorded as ``random`` with that seed, so the same backbone can be rebuilt.

Before any work the annotation file is validated, and each decoded image is compared with the
annotation's ``size``; free disk space for the maps still to write is checked up front. The
provenance (annotation fingerprint, backbone, weights sha256, input size, normalisation, layer,
dtype) is what ``hoi train`` / ``hoi test`` compare, see :mod:`hoi.provenance`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_prep.common import code_version, rank_part, run_stage, shard
from hoi.data.cache import FeatureFile, FeatureWriter
from hoi.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageListDataset,
    backbone_input,
    check_image_dir,
)
from hoi.data.validation import load_valid_annotations
from hoi.engine.disk import require_free_space
from hoi.engine.distributed import barrier, cleanup, init_distributed
from hoi.errors import UserError
from hoi.models.backbones import ARCHS, FrozenFeatureExtractor, backbone_config
from hoi.models.extractor import build_extractor as extractor_of
from hoi.models.extractor import extract_maps, map_shape
from hoi.provenance import annotation_fingerprint


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m data_prep.extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="folder of the split's images")
    p.add_argument("--anno", required=True, help="instances_{split}.json (gives the image list)")
    p.add_argument("--backbone", required=True, help=f"arch name ({', '.join(sorted(ARCHS))}) or a "
                                                     "YAML file")
    p.add_argument("--weights", required=True, help="backbone weights file, 'torchvision', or "
                                                    "'none' (random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights of --weights "
                                                       "none (recorded)")
    p.add_argument("--out", required=True, help="features_{split}.h5 to write (or resume)")
    p.add_argument("--input-size", nargs=2, type=int, default=(400, 400), metavar=("H", "W"))
    p.add_argument("--stage", type=int, default=4, help="last ResNet stage kept (4 = layer3, "
                                                        "stride 16)")
    p.add_argument("--mean", nargs=3, type=float, default=IMAGENET_MEAN)
    p.add_argument("--std", nargs=3, type=float, default=IMAGENET_STD)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--non-strict", action="store_true", help="load weights whose keys do not all "
                                                             "match")
    return p.parse_args(argv)


def build_extractor(args: argparse.Namespace) -> tuple[FrozenFeatureExtractor, dict]:
    """The frozen backbone of the command line and the provenance that describes its maps."""
    is_file = args.backbone.endswith((".yaml", ".yml"))
    cfg = backbone_config(None if is_file else args.backbone, args.backbone if is_file else None)
    return extractor_of(cfg, args.weights, args.seed, args.stage, not args.non_strict,
                        args.input_size,
                        args.mean, args.std)


def merge_parts(out: Path, parts: list[Path], filenames, sizes, shape, provenance) -> None:
    """Copy every rank's finished images into the final file, then remove the parts."""
    final = FeatureWriter(out, filenames, sizes, shape, provenance)
    for part in parts:
        src = FeatureFile(part, require_complete=False)
        for i in final.pending(src.done.nonzero()[0].tolist()):
            final.write(i, src.get(i))
        final.flush()
    missing = final.pending()
    final.close()
    if missing:
        raise UserError(f"{out}: {len(missing)} images still have no features after merging "
                        f"{parts}")
    for part in parts:
        part.unlink()


def extract(args: argparse.Namespace) -> Path:
    info = init_distributed(args.device)
    out = Path(args.out)
    anno = load_valid_annotations(args.anno)
    filenames, sizes = anno["filenames"], anno["size"]
    check_image_dir(args.images, filenames, args.anno)
    extractor, provenance = build_extractor(args)
    provenance.update(annotation=annotation_fingerprint(args.anno, anno),
                      code_version=code_version())
    extractor.to(info.device)
    shape = map_shape(extractor, args.input_size)
    target = out if not info.distributed else rank_part(out, info.rank, info.world_size)
    if info.distributed and out.exists():  # an earlier run already merged some images
        done_before = set(FeatureFile(out, require_complete=False).done.nonzero()[0].tolist())
    else:
        done_before = set()
    writer = FeatureWriter(target, filenames, sizes, shape, provenance)
    mine = [i for i in shard(range(len(filenames)), info.rank,
                             info.world_size) if i not in done_before]
    todo = writer.pending(mine)
    require_free_space(target, len(todo) * int(np.prod(shape)) * 2, "the feature maps of "
                                                                    f"{len(todo)} images")
    if info.is_main:
        print(f"[extract] {out}: {len(mine) - len(todo)} of {len(mine)} images of this rank "
              "already done; "
              f"{len(todo)} to go on {info.device} (world size {info.world_size})", flush=True)
    transform = lambda img: backbone_input(img, args.input_size, args.mean, args.std)  # noqa: E731
    loader = DataLoader(
        ImageListDataset(args.images, filenames, todo, transform, sizes, str(args.anno)),
        batch_size=args.batch_size, num_workers=args.workers, pin_memory=info.device.type == "cuda",
        persistent_workers=False,
    )
    start, count = time.perf_counter(), 0
    bar = tqdm(total=len(todo), desc=f"extract[{info.rank}]", unit="img", disable=not info.is_main)
    with bar:
        for indices, maps in extract_maps(extractor, loader, info.device):
            for i, fmap in zip(indices, maps):
                writer.write(i, fmap)
            writer.flush()
            count += len(indices)
            bar.update(len(indices))
            print(f"[extract] rank {info.rank}: done {count}/{len(todo)}", flush=True)
    writer.close()
    elapsed = time.perf_counter() - start
    if info.is_main and count:
        print(f"[extract] {count} images in {elapsed:.1f} s ({count / elapsed:.2f} images/s on "
              "rank 0)", flush=True)
    barrier()
    if info.distributed and info.is_main:
        parts = [rank_part(out, r, info.world_size) for r in range(info.world_size)]
        merge_parts(out, parts, filenames, sizes, shape, provenance)
        print(f"[extract] merged {len(parts)} parts into {out}", flush=True)
    barrier()
    cleanup()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage(extract, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
