#!/usr/bin/env python
"""Throughput of the GPU-facing data_prep stages (what feeds them, what they compute, what they
write) and the size of the feature cache.

    python scripts/bench_extract.py [--images 16] [--device cpu|cuda] [--threads 1]
           [--batch-size N] [--workers N] [--backbones resnet50,sac_resnet50]
           [--detect-images 8] [--detect-size 480 640] [--no-detect]

Writes ``--images`` JPEGs of HICO-DET's typical size (640x480, photos from scikit-image) and
prints two tables:

- the feeder table (:func:`feeder_rates`), images/s of each side of a stage measured alone and
  of the stage's real loop: for ``data_prep.extract`` (SAC-ResNet-50 to layer3 at 400x400) the
  loader alone (JPEG decode + resize to uint8 in ``--workers`` processes), the model alone (on
  random uint8 batches already on the device: normalisation, forward, float16 maps, the finite
  check), the writer alone (the writer thread storing float16 maps into the HDF5 file) and the
  loop (``data_prep.extract`` itself, its own images/s line), with the side that limits: the
  slowest of the three alone. The same for ``data_prep.detect`` (Detectron2 Faster R-CNN R50-FPN,
  random weights, the images resized to ``--detect-size`` short/long side) unless
  ``--no-detect``.
- the cache table: per backbone the loop's images/s and the bytes per image of the HDF5 cache,
  with the disk space the whole of HICO-DET (38,118 + 9,658 images) needs.

Give enough images for a few seconds of work per measure: the loop's rate includes the start
of its loader workers. ``scripts/gpu_check.py`` can call :func:`feeder_rates` on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hoi.data import build_instances

HICO_IMAGES = 38118 + 9658
DETECT_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"


def make_images(root: Path, n: int) -> Path:
    """``root/images`` with ``n`` JPEGs of 640x480 and ``root/anno.json`` listing them."""
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
              skimage.data.rocket()]
    (root / "images").mkdir(parents=True)
    names = []
    for i in range(n):
        img = Image.fromarray(photos[i % 4]).resize((640, 480))
        name = f"HICO_train2015_{i + 1:08d}.jpg"
        img.save(root / "images" / name, quality=90)
        names.append(name)
    pairs = [{"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}] * n
    (root / "anno.json").write_text(json.dumps(build_instances(names, [[640, 480]] * n, pairs)))
    return root


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loader_rate(root: Path, transform, batch_size: int, workers: int, device: torch.device,
                 collate=None, min_images: int = 0) -> float:
    """images/s of the DataLoader alone once its workers delivered the first batch."""
    from hoi.data.images import ImageListDataset

    names = json.loads((root / "anno.json").read_text())["filenames"]
    repeats = max(1, -(-max(min_images, 2 * batch_size) // len(names)))
    indices = list(range(len(names))) * repeats
    loader = DataLoader(ImageListDataset(root / "images", names, indices, transform),
                        batch_size=batch_size, num_workers=workers, collate_fn=collate,
                        pin_memory=device.type == "cuda")
    it = iter(loader)
    first = next(it)
    start, n = time.perf_counter(), 0
    for batch in it:
        n += len(batch) if collate else len(batch[1])
    elapsed = time.perf_counter() - start
    del first
    return n / elapsed if n else float("nan")


def _writer_rate(items: list[Any], write, flush, images_per_item: int) -> float:
    """images/s of the writer thread alone on ``items`` already on the host."""
    from hoi.engine.write_behind import WriteBehind

    start = time.perf_counter()
    with WriteBehind(write, flush, maxsize=4) as behind:
        for item in items:
            behind.put(item)
    return len(items) * images_per_item / (time.perf_counter() - start)


def _run_stage(main, parse, argv: list[str]) -> float:
    """The images/s line of a stage run on ``argv``."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(io.StringIO()):
        main(parse(argv))
    rate = re.search(r"\(([\d.]+) images/s", log.getvalue())
    if rate is None:
        raise RuntimeError(f"no throughput line in the stage's log:\n{log.getvalue()}")
    return float(rate.group(1))


def _row(stage: str, setting: str, batch: int, workers: int, loader: float, model: float,
         writer: float, loop: float) -> dict[str, Any]:
    sides = {"loader": loader, "model": model, "writer": writer}
    return {"stage": stage, "setting": setting, "batch": batch, "workers": workers, **sides,
            "loop": loop, "limited_by": min(sides, key=sides.get),
            "loop_of_limit": loop / min(sides.values())}


def extract_rates(device: torch.device, root: Path, batch_size: int, workers: int,
                  arch: str = "sac_resnet50", input_size: Sequence[int] = (400, 400),
                  model_batches: int = 3) -> dict[str, Any]:
    """The extraction row of :func:`feeder_rates` on the images of ``root``."""
    import functools

    from data_prep.extract import extract, parse_args
    from hoi.data.cache import FeatureWriter
    from hoi.data.images import IMAGENET_MEAN, IMAGENET_STD, resized_uint8
    from hoi.engine.write_behind import to_host
    from hoi.models.backbones import backbone_config
    from hoi.models.extractor import build_extractor, device_maps, finite_per_image, map_shape

    names = json.loads((root / "anno.json").read_text())["filenames"]
    size = tuple(int(v) for v in input_size)
    loader = _loader_rate(root, functools.partial(resized_uint8, size=size), batch_size, workers,
                          device, min_images=4 * batch_size)

    extractor, _ = build_extractor(backbone_config(arch, None), "none")
    extractor.to(device)
    cuda = device.type == "cuda"
    if cuda:  # as the stage runs it
        torch.backends.cudnn.benchmark = True
        extractor.to(memory_format=torch.channels_last)
    batch = torch.randint(0, 256, (batch_size, 3, *size), dtype=torch.uint8, device=device)
    norm = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    fake = [(list(range(batch_size)), batch)] * (model_batches + 1)
    maps_iter = device_maps(extractor, fake, device, norm, channels_last=cuda)
    _, maps = next(maps_iter)  # warm-up (and cuDNN's autotuning)
    finite_per_image(maps).cpu()
    _sync(device)
    start = time.perf_counter()
    for _, maps in maps_iter:
        to_host(maps, finite_per_image(maps))
    _sync(device)
    model = model_batches * batch_size / (time.perf_counter() - start)

    shape = map_shape(extractor, size)
    writer = FeatureWriter(root / "writer_alone.h5", names, [[640, 480]] * len(names), shape,
                           {"bench": "writer alone"})
    del maps  # the device's
    host_maps = torch.randn(batch_size, *shape).half()
    finite = torch.ones(batch_size, dtype=torch.bool)
    items = [list(range(k, min(k + batch_size, len(names))))
             for k in range(0, len(names), batch_size)]

    def write(indices: list[int]) -> None:
        if not finite[:len(indices)].numpy().all():
            raise AssertionError("not finite")
        for i, fmap in zip(indices, host_maps.numpy()):
            writer.write(i, fmap)

    writer_rate = _writer_rate(items, write, writer.flush, 1) * len(names) / len(items)
    writer.close()
    del extractor, batch
    if cuda:
        torch.cuda.empty_cache()

    loop = _run_stage(extract, parse_args, [
        "--images", str(root / "images"), "--anno", str(root / "anno.json"), "--backbone", arch,
        "--weights", "none", "--batch-size", str(batch_size), "--workers", str(workers),
        "--device", device.type, "--input-size", *map(str, size),
        "--out", str(root / f"loop_{arch}_{time.monotonic_ns()}.h5")])
    return _row("extract", f"{arch} to layer3, {size[0]}x{size[1]}, float16 maps", batch_size,
                workers, loader, model, writer_rate, loop)


def detect_rates(device: torch.device, root: Path, images: int, batch_size: int, workers: int,
                 size: Sequence[int] = (480, 640), config: str = DETECT_CONFIG,
                 model_batches: int = 2) -> dict[str, Any]:
    """The detection row of :func:`feeder_rates` on the first ``images`` images of ``root``."""
    from data_prep.detect import detect, parse_args
    from hoi.data.cache import ImageProposals, ProposalWriter
    from hoi.detector import (
        DetectorSettings,
        Detectron2Input,
        build_detector,
        raw_detections,
        to_device,
    )
    from hoi.engine.write_behind import to_host

    anno = json.loads((root / "anno.json").read_text())
    sub = root / f"detect_{images}"
    sub.mkdir(exist_ok=True)
    for key in ("filenames", "size", "annotation"):
        anno[key] = anno[key][:images]
    anno["empty"] = [e for e in anno.get("empty", []) if e < images]
    (sub / "anno.json").write_text(json.dumps(anno))
    (sub / "images").symlink_to(root / "images")

    settings = DetectorSettings(config, "none", min_size=int(size[0]), max_size=int(size[1]))
    model, cfg = build_detector(settings, device, None)
    loader = _loader_rate(sub, Detectron2Input(cfg), batch_size, workers, device,
                          collate=_as_list, min_images=2 * batch_size)

    h, w = int(size[0]), int(size[1])
    inputs = [{"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8), "height": 480,
               "width": 640} for _ in range(batch_size)]
    with torch.inference_mode():
        raw_detections(model, to_device(inputs, device))  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(model_batches):
            packed, _ = raw_detections(model, to_device(inputs, device))
            to_host(packed)
        _sync(device)
    model_rate = model_batches * batch_size / (time.perf_counter() - start)
    del model

    names = anno["filenames"]
    writer = ProposalWriter(sub / "writer_alone.h5", names, 100, {"bench": "writer alone"})
    rng = np.random.default_rng(0)
    det = ImageProposals(rng.uniform(1, 400, (100, 4)), rng.uniform(0, 1, 100),
                         rng.integers(0, 80, 100))
    items = [list(range(k, min(k + batch_size, len(names))))
             for k in range(0, len(names), batch_size)]

    def write(indices: list[int]) -> None:
        for i in indices:
            writer.write(i, det)

    writer_rate = _writer_rate(items, write, writer.flush, 1) * len(names) / len(items)
    writer.close()

    loop = _run_stage(detect, parse_args, [
        "--images", str(sub / "images"), "--anno", str(sub / "anno.json"), "--config", config,
        "--weights", "none", "--min-size", str(h), "--max-size", str(w), "--batch-size",
        str(batch_size), "--workers", str(workers), "--device", device.type,
        "--out", str(sub / f"loop_{time.monotonic_ns()}.h5")])
    return _row("detect", f"Faster R-CNN {Path(config).stem}, random weights, 640x480 -> "
                f"{h}/{w}", batch_size, workers, loader, model_rate, writer_rate, loop)


def _as_list(batch: list) -> list:
    return batch


def feeder_rates(device: torch.device | str, images: int = 16, batch_size: int | None = None,
                 workers: int | None = None, arch: str = "sac_resnet50",
                 input_size: Sequence[int] = (400, 400), detect: bool = True,
                 detect_images: int = 8, detect_batch_size: int | None = None,
                 detect_size: Sequence[int] = (480, 640), root: str | Path | None = None,
                 ) -> list[dict[str, Any]]:
    """Per stage (``extract``, then ``detect`` if ``detect``) a dict: ``loader``, ``model``,
    ``writer`` (images/s of each side alone), ``loop`` (images/s of the stage itself),
    ``limited_by`` (the slowest side alone), ``loop_of_limit`` (loop / that side's rate: near 1
    when the sides overlap), ``batch``, ``workers``, ``setting``.

    Batch sizes and workers default to the stages' own defaults on ``device``; the JPEGs (640x480)
    are made under ``root`` (default a temporary folder)."""
    import data_prep.detect as detect_stage
    import data_prep.extract as extract_stage
    from hoi.data.images import loader_workers

    device = torch.device(device)
    cuda = device.type == "cuda"
    workers = loader_workers() if workers is None else workers
    batch = batch_size or (extract_stage.CUDA_BATCH if cuda else extract_stage.CPU_BATCH)
    det_batch = detect_batch_size or (detect_stage.CUDA_BATCH if cuda else detect_stage.CPU_BATCH)
    with contextlib.ExitStack() as stack:
        if root is None:
            root = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_extract_"))
        folder = Path(root) / f"feeder_{time.monotonic_ns()}"
        make_images(folder, max(images, detect_images if detect else 0))
        rows = [extract_rates(device, folder, batch, workers, arch, input_size)]
        if detect:
            rows.append(detect_rates(device, folder, detect_images, det_batch, workers,
                                     detect_size))
    return rows


def feeder_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| stage | setting | batch | workers | loader alone | model alone | writer alone | "
             "loop | limited by |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['setting']} | {r['batch']} | {r['workers']} | "
                     f"{r['loader']:.2f} | {r['model']:.2f} | {r['writer']:.1f} | {r['loop']:.2f} "
                     f"({r['loop_of_limit']:.0%} of the limit) | {r['limited_by']} |")
    return "\n".join(lines)


def cache_rows(device: torch.device, root: Path, archs: Sequence[str], batch_size: int,
               workers: int) -> list[tuple[str, float, float]]:
    """(backbone, loop images/s, bytes per image of its features file) per backbone."""
    from data_prep.extract import extract, parse_args

    anno = json.loads((root / "anno.json").read_text())
    rows = []
    for arch in archs:
        out = root / f"{arch}.h5"
        rate = _run_stage(extract, parse_args, [
            "--images", str(root / "images"), "--anno", str(root / "anno.json"), "--backbone",
            arch, "--weights", "none", "--batch-size", str(batch_size), "--workers",
            str(workers), "--device", device.type, "--out", str(out)])
        rows.append((arch, rate, out.stat().st_size / len(anno["filenames"])))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=None, help="extraction batch (default: the "
                                                                "stage's on the device)")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: the "
                                                             "stages', cores - 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backbones", default="resnet50,sac_resnet50",
                   help="backbones of the cache table ('' for none)")
    p.add_argument("--detect-images", type=int, default=8)
    p.add_argument("--detect-batch-size", type=int, default=None)
    p.add_argument("--detect-size", nargs=2, type=int, default=(480, 640), metavar=("SHORT", "MAX"),
                   help="Detectron2's test resize (the stage's default is 800 1333)")
    p.add_argument("--no-detect", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = (torch.cuda.get_device_name() if device.type == "cuda"
            else f"CPU, {args.threads} torch thread(s)")
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        rows = feeder_rates(device, args.images, args.batch_size, args.workers,
                            detect=not args.no_detect, detect_images=args.detect_images,
                            detect_batch_size=args.detect_batch_size,
                            detect_size=args.detect_size, root=tmp)
        print(f"# Feeding the device ({name}; {args.images} JPEGs of 640x480 for extraction, "
              f"{args.detect_images} for detection; images/s)")
        print(feeder_table(rows))
        print()
        for r in rows:
            print(f"{r['stage']}: limited by: {r['limited_by']}")
        archs = [a for a in args.backbones.split(",") if a]
        if archs:
            root = make_images(Path(tmp) / "cache", args.images)
            ext = rows[0]
            cache = cache_rows(device, root, archs, ext["batch"], ext["workers"])
            print(f"\n# Feature cache ({name}; 400x400 input, layer3 1024x25x25 float16; "
                  f"{args.images} images of 640x480, batch {ext['batch']}, {ext['workers']} "
                  "loader workers)")
            print("| backbone | images/s | cache per image (MB) | HICO-DET cache (GB, 47,776 "
                  "images) |")
            print("|---|---:|---:|---:|")
            for arch, ips, per_image in cache:
                print(f"| {arch} | {ips:.2f} | {per_image / 1e6:.3f} | "
                      f"{per_image * HICO_IMAGES / 1e9:.1f} |")


if __name__ == "__main__":
    main()
