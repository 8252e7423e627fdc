"""Object detections for every image: Detectron2 Faster R-CNN, ground truth, or imported files.

    python -m data_prep.detect --images DIR --anno instances_X.json --out detections_X.h5 \
        [--config COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml] [--weights FILE]
    python -m data_prep.detect --source gt --anno instances_X.json --out ...   # oracle boxes
    python -m data_prep.detect --source import --import-dir DIR --anno ... --out ...
    python -m data_prep.detect --source import --import-format vsgnet --import-dir DIR ...
    torchrun --nproc_per_node 4 -m data_prep.detect ...                        # sharded

``--source detectron2`` (default) runs a model-zoo config (or a local YAML) in batches, keeps
detections above ``--score-thresh`` after per-class NMS at ``--nms-thresh``, at most
``--max-per-image``, and maps COCO's 80 classes to HICO-DET's object indices. Boxes are
written in the annotation convention: 1-based inclusive pixels of the original image
(Detectron2's continuous 0-based box ``[x1, y1, x2, y2]`` covers pixels ``x1 + 1 .. x2``).
The run resumes after a kill (per-image done flags in ``<out>.partial``), and under torchrun
every rank writes its share to a part file that rank 0 merges. ``--workers`` processes decode
and resize (into pinned memory on CUDA), each batch's detections come to the host in one copy,
and a writer thread stores them behind a queue of ``--write-queue`` batches while the device
detects the next.

``--source gt`` writes each image's distinct ground-truth boxes (humans as person, objects
with their class) with score 1, optionally jittered by ``--jitter`` (a fraction of the box
size, seeded): the oracle-detection setting, and the demo's stand-in without detector weights.

``--source import`` reads one JSON file per image, ``DIR/<image name without extension>.json``;
``--import-format vsgnet`` reads the official VSGNet detection files
(:mod:`data_prep.vsgnet_detections`), ``project`` (the default) this format:

    {"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "labels": [...]}

``labels`` are HICO object indices (0..79), or names (``"person"``, ``"dining_table"``);
``--import-labels coco80`` reads them as COCO contiguous ids 1..80, ``coco91`` as COCO
category ids. ``--import-boxes`` says whether boxes are ``1-based`` inclusive (the HICO-DET
files) or ``0-based`` (as PPDM/QPIC-style JSON ship them); an image without a file has no
detections only with ``--allow-missing``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_prep.common import code_version, rank_part, run_stage, shard
from hoi.data.cache import CacheError, ImageProposals, ProposalWriter, gt_proposals, write_proposals
from hoi.data.images import ImageListDataset, check_image_dir, loader_workers
from hoi.data.metadata import hico_metadata
from hoi.data.validation import load_valid_annotations
from hoi.detector import (
    DEFAULT_CONFIG,
    DetectorError,
    DetectorSettings,
    Detectron2Input,
    build_detector,
    raw_detections,
    resolve_weights,
    to_device,
    unpack_detections,
)
from hoi.engine.disk import require_free_space
from hoi.engine.distributed import barrier, cleanup, init_distributed
from hoi.engine.run_lock import hold_run_lock
from hoi.engine.write_behind import DurableProgress, Ready, WriteBehind, to_host
from hoi.provenance import annotation_fingerprint

CUDA_BATCH = 8  # images of varying sizes, padded to the batch's largest
CPU_BATCH = 2
WRITE_QUEUE = 4  # batches
LOG_EVERY_S = 60.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m data_prep.detect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--anno", required=True, help="instances_{split}.json (the image list)")
    p.add_argument("--out", required=True, help="detections_{split}.h5 to write (or resume)")
    p.add_argument("--source", default="detectron2", choices=["detectron2", "gt", "import"])
    p.add_argument("--images", help="folder of the split's images (detectron2 source)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="model-zoo config name or a local YAML")
    p.add_argument("--weights", default=None,
                   help="model weights (.pkl/.pth); default: the model zoo's (needs network); "
                        "'none': random")
    p.add_argument("--score-thresh", type=float, default=0.05)
    p.add_argument("--nms-thresh", type=float, default=0.5)
    p.add_argument("--max-per-image", type=int, default=100)
    p.add_argument("--min-size", type=int, default=None, help="test-time short side (config "
                                                              "default 800)")
    p.add_argument("--max-size", type=int, default=None, help="test-time long-side cap (config "
                                                              "default 1333)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per batch (default: {CUDA_BATCH} on CUDA, {CPU_BATCH} on the CPU)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes decoding and resizing the images (default: the "
                        "cores of this process less one, shared among the ranks of a machine; "
                        f"{loader_workers()} here)")
    p.add_argument("--write-queue", type=int, default=WRITE_QUEUE,
                   help="batches of detections that may wait for the writer thread")
    p.add_argument("--log-every", type=float, default=LOG_EVERY_S,
                   help="seconds between progress lines beside the bar (0: a line after every "
                        "written batch)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--jitter", type=float, default=0.0, help="gt source: box noise, fraction of "
                                                             "size")
    p.add_argument("--seed", type=int, default=0, help="gt source: seed of the jitter")
    p.add_argument("--import-dir", help="import source: folder of per-image JSON files")
    p.add_argument("--import-format", default="project", choices=["project", "vsgnet"],
                   help="import source: per-image files of this project or VSGNet's "
                        "Object_Detections_hico")
    p.add_argument("--import-labels", default="hico", choices=["hico", "coco80", "coco91"])
    p.add_argument("--import-boxes", default="1-based", choices=["1-based", "0-based"])
    p.add_argument("--allow-missing", action="store_true", help="import source: no file = no "
                                                                "detections")
    args = p.parse_args(argv)
    if args.write_queue < 1:
        p.error(f"--write-queue must be at least 1, got {args.write_queue}")
    return args


def detector_settings(args: argparse.Namespace) -> DetectorSettings:
    """The detector this command line describes."""
    return DetectorSettings(args.config, args.weights, args.score_thresh, args.nms_thresh,
                            args.max_per_image, args.min_size, args.max_size)


# --------------------------------------------------------------------------- Detectron2
def _run_detectron2(args, info, writer, todo, filenames, sizes, weights: str | None) -> int:
    """Detect ``todo`` into ``writer``: the loader decodes and resizes in ``--workers``
    processes (into pinned memory on CUDA), the device detects a batch while a thread writes the
    previous ones (:class:`hoi.engine.write_behind.WriteBehind`), one copy to the host a batch."""
    device = info.device
    cuda = device.type == "cuda"
    model, cfg = build_detector(detector_settings(args), device, weights)
    batch_size = args.batch_size or (CUDA_BATCH if cuda else CPU_BATCH)
    workers = loader_workers() if args.workers is None else args.workers
    loader = DataLoader(
        ImageListDataset(args.images, filenames, todo, Detectron2Input(cfg), sizes, str(args.anno)),
        batch_size=batch_size, num_workers=workers, collate_fn=_as_list, pin_memory=cuda,
    )
    bar = tqdm(total=len(todo), desc=f"detect[{info.rank}]", unit="img", disable=not info.is_main)
    progress = DurableProgress(len(todo), f"[detect] rank {info.rank}", args.log_every, bar)

    def write(item: tuple[list[int], list[int], list[tuple[int, int]],
                          tuple[torch.Tensor], Ready]) -> None:
        indices, counts, image_sizes, (packed,), ready = item
        ready.wait()
        for i, det in zip(indices, unpack_detections(packed.numpy(), counts, image_sizes)):
            writer.write(i, det)
        progress.written(len(indices))

    def flush() -> None:
        writer.flush()
        progress.flushed()

    with torch.inference_mode(), bar, WriteBehind(write, flush, args.write_queue,
                                                  name="detect-writer") as behind:
        for batch in loader:
            inputs = [inp for _, inp in batch]
            packed, counts = raw_detections(model, to_device(inputs, device))
            behind.put(([i for i, _ in batch], counts,
                        [(inp["width"], inp["height"]) for inp in inputs], *to_host(packed)))
    return progress.count


def _as_list(batch: list) -> list:
    return batch


# --------------------------------------------------------------------------- ground truth
def gt_proposals_jittered(anno: dict[str, Any], index: int, jitter: float = 0.0,
                          seed: int = 0) -> ImageProposals:
    """Distinct GT boxes of image ``index`` (humans as person), score 1, optionally jittered by
    ``jitter`` x the box size (seeded per image), rounded and clipped to the image."""
    det = gt_proposals(anno["annotation"][index])
    boxes = det.boxes
    if jitter > 0 and len(boxes):
        w, h = anno["size"][index]
        rng = np.random.default_rng([seed, index])
        size = np.concatenate([boxes[:, 2:] - boxes[:, :2] + 1] * 2, axis=1)
        boxes = boxes + rng.normal(0, jitter, boxes.shape).astype(np.float32) * size
        boxes = np.round(boxes)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(1, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(1, h)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
    return ImageProposals(boxes, det.scores, det.labels)


# --------------------------------------------------------------------------- import
def import_detections(path: Path, args: argparse.Namespace, size: Sequence[int]) -> ImageProposals:
    """One per-image JSON file (see the module docstring) -> detections in our convention."""
    meta = hico_metadata()
    if not path.is_file():
        if args.allow_missing:
            return ImageProposals(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
        raise DetectorError(f"no detections file for this image: {path} (use --allow-missing to "
                            "accept that)")
    try:
        data = json.loads(path.read_text())
        boxes = np.asarray(data["boxes"], dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(data["scores"], dtype=np.float32).reshape(-1)
        raw = list(data["labels"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DetectorError(
            f"{path}: expected "
            f"{{'boxes': [[x1, y1, x2, y2], ...], 'scores': [...], 'labels': [...]}} ({err!r})"
        ) from err
    if not (len(boxes) == len(scores) == len(raw)):
        raise DetectorError(f"{path}: {len(boxes)} boxes, {len(scores)} scores, {len(raw)} labels")
    names = {n: i for i, n in enumerate(meta.objects)}
    table = {"hico": None, "coco80": meta.coco80_to_hico,
             "coco91": meta.coco91_to_hico}[args.import_labels]
    labels = []
    for k, label in enumerate(raw):
        if isinstance(label, str):
            key = label.replace(" ", "_")
            if key not in names:
                raise DetectorError(f"{path}: detection {k}: unknown object name {label!r}")
            labels.append(names[key])
            continue
        value = int(label)
        mapped = value if table is None else (table[value] if 0 <= value < len(table) else -1)
        if not 0 <= mapped < len(meta.objects):
            raise DetectorError(f"{path}: detection {k}: label {label!r} is not a valid "
                                f"{args.import_labels} id")
        labels.append(int(mapped))
    if args.import_boxes == "0-based":
        boxes = boxes + 1.0
    bad = (~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < boxes[:, 0])
           | (boxes[:, 3] < boxes[:, 1]))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DetectorError(f"{path}: detection {k}: box {boxes[k].tolist()} is not [x1, y1, x2, "
                            "y2] with x1<=x2, y1<=y2")
    w, h = size
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(1, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(1, h)
    return ImageProposals(boxes, scores, np.asarray(labels))


# --------------------------------------------------------------------------- driver
def provenance_of(args: argparse.Namespace, anno: dict[str, Any]) -> dict[str, Any]:
    """What these detections are made from (compared by every later stage,
    :mod:`hoi.provenance`)."""
    prov: dict[str, Any] = {"kind": "detections", "source": args.source,
                            "annotation": annotation_fingerprint(args.anno, anno),
                            "code_version": code_version()}
    # detectron2: DetectorSettings.provenance, once its weights are resolved
    if args.source == "gt":
        prov.update(jitter=args.jitter, seed=args.seed)
    elif args.source == "import":
        prov.update(import_dir=str(args.import_dir), import_format=args.import_format,
                    import_labels=args.import_labels, import_boxes=args.import_boxes)
    return prov


def detect(args: argparse.Namespace) -> Path:
    """One run per output file: ``<out>.lock`` is held for the whole stage
    (:mod:`hoi.engine.run_lock`)."""
    info = init_distributed(args.device) if args.source == "detectron2" else None
    with hold_run_lock(args.out, "data_prep.detect", folder=False, dist=info):
        return _detect(args)


def _detect(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    anno = load_valid_annotations(args.anno)
    filenames, sizes = anno["filenames"], anno["size"]
    prov = provenance_of(args, anno)
    if args.source == "gt":
        dets = [gt_proposals_jittered(anno, i, args.jitter,
                                      args.seed) for i in range(len(filenames))]
        write_proposals(out, filenames, dets, prov, sizes)
        print("[detect] ground-truth "
              f"boxes{f' jittered by {args.jitter:.2f}' if args.jitter else ''} "
              f"for {len(filenames)} images -> {out}", flush=True)
        return out
    if args.source == "import":
        if not args.import_dir or not Path(args.import_dir).is_dir():
            raise DetectorError(f"--import-dir must be an existing folder, got {args.import_dir!r}")
        if args.import_format == "vsgnet":
            from data_prep.vsgnet_detections import read_vsgnet_dir, unsorted_images
            dets = read_vsgnet_dir(Path(args.import_dir), filenames, sizes, args.allow_missing)
            print(f"[detect] {unsorted_images(dets)} of {len(dets)} images list their detections "
                  "out of descending score order (where pairs.cap_order=score and =file, the "
                  "official order, can keep different ones)", flush=True)
        else:
            dets = [import_detections(Path(args.import_dir) / (Path(n).stem + ".json"), args,
                                      sizes[i])
                    for i, n in enumerate(filenames)]
        write_proposals(out, filenames, dets, prov, sizes)
        print(f"[detect] imported detections for {len(filenames)} images -> {out}", flush=True)
        return out

    if not args.images:
        raise DetectorError("--images is required with --source detectron2")
    check_image_dir(args.images, filenames, args.anno)
    info = init_distributed(args.device)
    settings = detector_settings(args)
    weights = resolve_weights(settings)  # before any file is made: a failed download leaves nothing
    prov.update(settings.provenance(weights))
    partial = out if not info.distributed else rank_part(out, info.rank, info.world_size)
    # the partial file (padded), the final file and a temp copy of it: about 3x the padded arrays
    require_free_space(out, 3 * len(filenames) * args.max_per_image * (4 * 4 + 4 + 8),
                       f"the detections of {len(filenames)} images")
    writer = ProposalWriter(partial, filenames, args.max_per_image, prov)
    mine = shard(range(len(filenames)), info.rank, info.world_size)
    todo = writer.pending(mine)
    if info.is_main:
        print(f"[detect] {out}: {len(mine) - len(todo)} of {len(mine)} images of this rank already "
              "done; "
              f"{len(todo)} to go on {info.device} (world size {info.world_size})", flush=True)
    start = time.perf_counter()
    count = _run_detectron2(args, info, writer, todo, filenames, sizes, weights) if todo else 0
    writer.flush()
    if info.is_main and count:
        elapsed = time.perf_counter() - start
        print(f"[detect] {count} images in {elapsed:.1f} s ({count / elapsed:.2f} images/s on rank "
              "0)", flush=True)
    barrier()
    if not info.distributed:
        writer.finalize(sizes)
    else:
        writer.close()
        barrier()
        if info.is_main:
            merge_partials(out, [rank_part(out, r, info.world_size)
                                 for r in range(info.world_size)],
                           filenames, args.max_per_image, prov, sizes)
            print(f"[detect] merged {info.world_size} parts into {out}", flush=True)
        barrier()
    cleanup()
    return out


def merge_partials(out: Path, parts: list[Path], filenames: list[str], max_per_image: int,
                   prov: dict, sizes: list | None = None) -> None:
    """Combine the ranks' partial files (each done on its own share) into the final file."""
    merged: list[ImageProposals | None] = [None] * len(filenames)
    writers = [ProposalWriter(p, filenames, max_per_image, prov) for p in parts]
    for w in writers:
        for i in np.flatnonzero(w.done):
            merged[i] = w.read(int(i))
    missing = [filenames[i] for i, d in enumerate(merged) if d is None]
    if missing:
        raise CacheError(f"{out}: {len(missing)} images have no detections in any part, e.g. "
                         f"{missing[:3]}")
    write_proposals(out, filenames, merged, prov, sizes)  # type: ignore[arg-type]
    for w in writers:
        w.close()
        w.partial.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage(detect, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
