"""Feature cache: the frozen (SAC-)ResNet's layer3 map of every image, in HDF5.

    python -m data_prep.extract --images DIR --anno instances_X.json \
        --backbone sac_resnet50|configs/backbones/X.yaml --weights FILE --out features_X.h5
    torchrun --nproc_per_node 4 -m data_prep.extract ...        # sharded over GPUs/machines

Each image is resized to ``--input-size`` (VSGNet's 400x400 by default), normalised with the
ImageNet mean/std and passed through the backbone up to ``--stage`` (4 = torchvision's layer3:
stride 16, 1024 channels). Maps are stored as float16, one image per chunk, with a done flag
per image: a killed run resumes where it stopped and recomputes no finished image. Under
torchrun every rank writes its own share to a part file and rank 0 merges them.

The loop keeps the device busy: ``--workers`` processes decode and resize the images and hand
them over as uint8 (pinned on CUDA; a quarter of the float32 bytes), the device normalises them
in float32 and runs the backbone (on CUDA: cuDNN autotuning, channels-last, float16 autocast as
before), the maps come back to pinned host memory without waiting, and a writer thread stores
them behind a queue of ``--write-queue`` batches (an image counts as done only once its map is
flushed). A map holding NaN or inf is refused before it is written, naming the image. Progress:
the bar, and a line at the first written batch, every ``--log-every`` seconds and at the end.
``--weights none`` runs a randomly initialised backbone (smoke tests only), seeded by
``--seed`` and recorded as ``random`` with that seed, so the same backbone can be rebuilt.

Before any work the annotation file is validated, and each decoded image is compared with the
annotation's ``size``; free disk space for the maps still to write is checked up front. The
provenance (annotation fingerprint, backbone, weights sha256, input size, normalisation, layer,
dtype) is what ``hoi train`` / ``hoi test`` compare, see :mod:`hoi.provenance`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_prep.common import code_version, rank_part, run_stage, shard
from hoi.data.cache import FeatureFile, FeatureWriter
from hoi.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageListDataset,
    check_image_dir,
    loader_workers,
    resized_uint8,
)
from hoi.data.validation import load_valid_annotations
from hoi.engine.disk import require_free_space
from hoi.engine.distributed import barrier, cleanup, init_distributed
from hoi.engine.run_lock import hold_run_lock
from hoi.engine.write_behind import DurableProgress, Ready, WriteBehind, to_host
from hoi.errors import UserError
from hoi.models.backbones import ARCHS, FrozenFeatureExtractor, backbone_config
from hoi.models.extractor import build_extractor as extractor_of
from hoi.models.extractor import device_maps, finite_per_image, map_shape, refuse_non_finite
from hoi.provenance import annotation_fingerprint

CUDA_BATCH = 64  # a GPU needs large batches to be busy; the maps are 1.28 MB each at 400x400
CPU_BATCH = 8
WRITE_QUEUE = 4  # batches
LOG_EVERY_S = 60.0


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
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per batch (default: {CUDA_BATCH} on CUDA; {CPU_BATCH} on the CPU, "
                        "where larger batches cost memory and gain no speed)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes decoding and resizing the images (default: the "
                        "cores of this process less one, shared among the ranks of a machine; "
                        f"{loader_workers()} here)")
    p.add_argument("--write-queue", type=int, default=WRITE_QUEUE,
                   help="batches of maps that may wait for the writer thread before the "
                        "computation waits (each batch x 1.28 MB of host memory at 400x400)")
    p.add_argument("--log-every", type=float, default=LOG_EVERY_S,
                   help="seconds between progress lines beside the bar (0: a line after every "
                        "written batch)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--non-strict", action="store_true", help="load weights whose keys do not all "
                                                             "match")
    args = p.parse_args(argv)
    if args.write_queue < 1:
        p.error(f"--write-queue must be at least 1, got {args.write_queue}")
    return args


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
    """One run per output file: ``<out>.lock`` is held for the whole stage
    (:mod:`hoi.engine.run_lock`)."""
    info = init_distributed(args.device)
    with hold_run_lock(args.out, "data_prep.extract", folder=False, dist=info):
        return _extract(args)


def _extract(args: argparse.Namespace) -> Path:
    info = init_distributed(args.device)
    out = Path(args.out)
    anno = load_valid_annotations(args.anno)
    filenames, sizes = anno["filenames"], anno["size"]
    check_image_dir(args.images, filenames, args.anno)
    extractor, provenance = build_extractor(args)
    provenance.update(annotation=annotation_fingerprint(args.anno, anno),
                      code_version=code_version())
    device = info.device
    cuda = device.type == "cuda"
    extractor.to(device)
    if cuda:  # one input size throughout: let cuDNN pick its fastest kernels once
        torch.backends.cudnn.benchmark = True
        extractor.to(memory_format=torch.channels_last)
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
    batch_size = args.batch_size or (CUDA_BATCH if cuda else CPU_BATCH)
    workers = loader_workers() if args.workers is None else args.workers
    if info.is_main:
        print(f"[extract] {out}: {len(mine) - len(todo)} of {len(mine)} images of this rank "
              "already done; "
              f"{len(todo)} to go on {device} (world size {info.world_size}; batch {batch_size}, "
              f"{workers} loader workers)", flush=True)
    # uint8 across to the device, normalised there (hoi.data.images.normalize_images)
    transform = functools.partial(resized_uint8, size=tuple(args.input_size))
    loader = DataLoader(
        ImageListDataset(args.images, filenames, todo, transform, sizes, str(args.anno)),
        batch_size=batch_size, num_workers=workers, pin_memory=cuda,
    )
    normalization = {"mean": list(args.mean), "std": list(args.std)}
    bar = tqdm(total=len(todo), desc=f"extract[{info.rank}]", unit="img", disable=not info.is_main)
    progress = DurableProgress(len(todo), f"[extract] rank {info.rank}", args.log_every, bar)

    def write(item: tuple[list[int], tuple[torch.Tensor, torch.Tensor], Ready]) -> None:
        indices, (maps, finite), ready = item
        ready.wait()
        bad = np.flatnonzero(~finite.numpy())
        if len(bad):  # the whole batch is refused; the earlier ones stay done
            raise refuse_non_finite(Path(args.images) / filenames[indices[bad[0]]], args.weights)
        for i, fmap in zip(indices, maps.numpy()):
            writer.write(i, fmap)
        progress.written(len(indices))

    def flush() -> None:
        writer.flush()
        progress.flushed()

    start = time.perf_counter()
    try:
        with bar, WriteBehind(write, flush, args.write_queue, name="extract-writer") as behind:
            for indices, maps in device_maps(extractor, loader, device, normalization,
                                             channels_last=cuda):
                behind.put((indices, *to_host(maps, finite_per_image(maps))))
    except BaseException:
        with contextlib.suppress(Exception):  # what was written stays done; the error is the news
            writer.close()
        raise
    writer.close()
    elapsed = time.perf_counter() - start
    count = progress.count
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
