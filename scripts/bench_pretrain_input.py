"""Pretraining's feeder beside its model: images/s of the loader alone (decode in the workers,
or JPEG bytes decoded on the device), of the model's training step alone (random uint8 images
already on the device), and of both together, and which side limits.

    python scripts/bench_pretrain_input.py [--device cpu|cuda] [--arch resnet50] [--batch 8]
        [--workers N] [--images 96] [--crop 224] [--steps 3]

The images are photo-like JPEGs of ImageNet's typical size (500x375, quality 90) written to a
temporary folder (read from the page cache, as a warm ImageNet epoch would be). The model step
is ``hoi pretrain``'s: normalisation on the device, autocast (bf16 where the GPU has it),
channels_last on CUDA, cross-entropy, backward, SGD. ``scripts/gpu_check.py`` (row
``pretrain_feed``) calls :func:`feed_rates` on CUDA.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

from hoi.engine.precision import autocast, resolve_amp  # noqa: E402
from hoi.models.backbones import ARCHS, AttentionResNet, backbone_config  # noqa: E402
from hoi.pretrain.augment import normalize  # noqa: E402
from hoi.pretrain.device_input import DeviceFeeder, memory_format  # noqa: E402
from hoi.pretrain.imagefolder import (  # noqa: E402
    EpochTaggedSampler,
    ImageFolderDataset,
    collate_skipping,
    train_augment,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_SIZE = (500, 375)  # the most common ImageNet training image size


def make_jpeg_folder(root: Path, n: int, size: tuple[int, int] = IMAGENET_SIZE) -> Path:
    """``n`` photo-like JPEGs (crops of scikit-image's photos, resized to ``size``) in two
    class folders."""
    import skimage.data
    from PIL import Image

    photos = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
              for name in ("astronaut", "coffee", "chelsea", "rocket")]
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = photos[i % len(photos)]
        x, y = rng.integers(0, img.width // 4), rng.integers(0, img.height // 4)
        crop = img.crop((x, y, x + img.width * 3 // 4, y + img.height * 3 // 4)).resize(size)
        crop.save(root / f"class{i % 2}" / f"{i:06d}.jpg", quality=90)
    return root


def default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Step:
    """``hoi pretrain``'s training step on ``arch``."""

    def __init__(self, arch: str, device: torch.device) -> None:
        self.device = device
        self.format = memory_format("auto", device)
        self.model = AttentionResNet(backbone_config(arch)).to(device, memory_format=self.format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4, momentum=0.9)
        self.amp = resolve_amp(True, "auto", device)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            loss = torch.nn.functional.cross_entropy(self.model(images), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def _loader(root: Path, encoded: bool, workers: int, batch: int, crop: int,
            device: torch.device) -> tuple[DataLoader, DeviceFeeder, EpochTaggedSampler]:
    data = ImageFolderDataset(root, augment=train_augment(crop, (0.08, 1.0), (3 / 4, 4 / 3), 0.5,
                                                          0), encoded=encoded)
    sampler = EpochTaggedSampler(DistributedSampler(data, 1, 0, shuffle=True, seed=0))
    loader = DataLoader(data, batch_size=batch, sampler=sampler, num_workers=workers,
                        collate_fn=collate_skipping, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                        drop_last=True)
    feed = DeviceFeeder(device, MEAN, STD, crop, memory_format("auto", device), data)
    return loader, feed, sampler


def _timed_epochs(loader, sampler, work, device: torch.device, epochs: int = 2) -> float:
    """images/s of the last ``epochs - 1`` passes (the first starts the workers)."""
    count, start = 0, None
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        if epoch == 1:
            _sync(device)
            start = time.perf_counter()
        for batch in loader:
            out = work(batch)
            if epoch >= 1:
                count += len(out)
    _sync(device)
    return count / (time.perf_counter() - start)


def model_rate(step: Step, batch: int, crop: int, steps: int) -> float:
    """images/s of the training step alone, on random uint8 images already on the device."""
    device = step.device
    images = torch.randint(0, 256, (batch, 3, crop, crop), dtype=torch.uint8, device=device)
    targets = torch.randint(0, 1000, (batch,), device=device)
    mean = torch.tensor(MEAN, device=device)
    std = torch.tensor(STD, device=device)

    def model_step() -> None:
        step(normalize(images, mean, std).contiguous(memory_format=step.format), targets)

    for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
        model_step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        model_step()
    _sync(device)
    return steps * batch / (time.perf_counter() - t0)


def feed_rates(device: torch.device, root: Path, arch: str = "resnet50", batch: int = 8,
               crop: int = 224, workers: int | None = None, steps: int = 3,
               paths: tuple[str, ...] = ("cpu", "device")) -> list[dict[str, Any]]:
    """One row per decode path: loader (+ feeder) images/s, model images/s, both, the limit."""
    workers = default_workers() if workers is None else workers
    step = Step(arch, device)
    model = model_rate(step, batch, crop, steps)
    rows = []
    for path in paths:
        loader, feed, sampler = _loader(root, path == "device", workers, batch, crop, device)
        alone = _timed_epochs(loader, sampler, lambda b, feed=feed: feed(b)[1], device)

        def both_step(b, feed=feed):
            x, y, _ = feed(b)
            step(x, y)
            return y

        both = _timed_epochs(loader, sampler, both_step, device)
        limit = "loader" if alone < model else "model"
        rows.append({"decode": path, "workers": workers, "arch": arch, "batch": batch,
                     "crop": crop, "loader": alone, "model": model, "both": both,
                     "limited_by": limit,
                     "amp": str(step.amp).replace("torch.", "") if step.amp else "off"})
        del loader
    return rows


def worker_rates(root: Path, crop: int = 224, seconds: float = 3.0) -> dict[str, float]:
    """images/s of one worker process's share per decode path (one core): the former float32
    transform (crop, flip, ToTensor, Normalize in the worker), today's CPU path (uint8 crop),
    and the device path's (the header and the file's bytes)."""
    from torchvision import transforms as T

    old = T.Compose([T.RandomResizedCrop(crop, antialias=True), T.RandomHorizontalFlip(),
                     T.ToTensor(), T.Normalize(MEAN, STD)])
    aug = train_augment(crop, (0.08, 1.0), (3 / 4, 4 / 3), 0.5, 0)
    datasets = {
        "workers decode, float32 normalised (before)": ImageFolderDataset(root, transform=old),
        "workers decode, uint8 (cpu path)": ImageFolderDataset(root, augment=aug),
        "workers read bytes (device path)": ImageFolderDataset(root, augment=aug, encoded=True),
    }
    rates = {}
    for name, data in datasets.items():
        data[0]  # noqa: B018 - warm the page cache and the imports
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            data[count % len(data)]
            count += 1
        rates[name] = count / (time.perf_counter() - start)
    return rates


IMAGENET_TRAIN, IMAGENET_VAL, EPOCHS = 1281167, 50000, 100  # the paper's recipe (Sec. IV-B)
TABLE_XI = ("resnet50", "gc_resnet50", "sac_resnet50", "resnet101", "gc_resnet101",
            "sac_resnet101")


def projection(resnet50_rate: float, feeder_rate: float | None = None) -> list[dict[str, Any]]:
    """Hours of the paper's ImageNet recipe per Table XI backbone, for a ResNet-50 training
    rate (images/s) scaled by each backbone's FLOPs at 224x224 (measured, torch's counter),
    capped by ``feeder_rate``; validation (forward only) at 3x the training rate."""
    from hoi.models.complexity import measure

    base = measure(backbone_config("resnet50")).flops
    rows = []
    for arch in TABLE_XI:
        ratio = measure(backbone_config(arch)).flops / base
        rate = resnet50_rate / ratio
        limit = "model"
        if feeder_rate is not None and feeder_rate < rate:
            rate, limit = feeder_rate, "feeder"
        hours = EPOCHS * (IMAGENET_TRAIN / rate + IMAGENET_VAL / (3 * rate)) / 3600
        rows.append({"arch": arch, "flops_ratio": ratio, "rate": rate, "hours": hours,
                     "limited_by": limit})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| decode | workers | arch, batch, crop | loader alone | model alone | both | "
             "limited by |", "|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['decode']} | {r['workers']} | {r['arch']}, {r['batch']}, "
                     f"{r['crop']} | {r['loader']:.1f} | {r['model']:.1f} | {r['both']:.1f} | "
                     f"{r['limited_by']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="resnet50", choices=sorted(ARCHS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--workers", type=int, default=None, help="default: cores - 1")
    p.add_argument("--images", type=int, default=96, help="JPEGs in the temporary folder (a "
                                                          "pass must hold several batches)")
    p.add_argument("--steps", type=int, default=3, help="timed model steps")
    p.add_argument("--project", type=float, default=None, metavar="R50_RATE",
                   help="only print the hours of the paper's recipe per Table XI backbone for "
                        "this ResNet-50 training rate (images/s), scaled by FLOPs")
    p.add_argument("--feeder", type=float, default=None, help="with --project: the feeder's "
                                                              "rate (images/s), a cap")
    args = p.parse_args(argv)
    if args.project is not None:
        rows = projection(args.project, args.feeder)
        print(f"{EPOCHS} epochs of {IMAGENET_TRAIN:,} images (+ {IMAGENET_VAL:,} validation "
              f"images, forward only) at ResNet-50 {args.project:.0f} images/s"
              + (f", feeder {args.feeder:.0f} images/s" if args.feeder else ""))
        print("| backbone | FLOPs / ResNet-50 | images/s | hours | limited by |\n"
              "|---|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['arch']} | {r['flops_ratio']:.3f} | {r['rate']:.0f} | {r['hours']:.1f} | "
                  f"{r['limited_by']} |")
        print(f"| all six | | | {sum(r['hours'] for r in rows):.1f} | |")
        return 0
    if args.device == "cpu":
        torch.set_num_threads(1)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_jpeg_folder(Path(tmp), args.images)
        per_core = worker_rates(root, args.crop)
        rows = feed_rates(device, root, args.arch, args.batch, args.crop, args.workers, args.steps)
    print(f"one worker's share, images/s on one core ({args.images} JPEGs of "
          f"{IMAGENET_SIZE[0]}x{IMAGENET_SIZE[1]}, crop {args.crop}):")
    print("| worker | images/s per core |\n|---|---:|")
    for name, rate in per_core.items():
        print(f"| {name} | {rate:.0f} |")
    print(f"\nloader and model, images/s on {device} ({torch.get_num_threads()} thread(s) in the "
          "main process):")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
