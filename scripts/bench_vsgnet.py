"""Throughput of VSGNet training on cached features: what the model consumes (pairs/s and
images/s of full training steps) against what the DataLoader delivers on its own (real worker
processes, each opening the HDF5 feature file itself). The loader should deliver at least
3x what the model consumes, or training waits on data.

    python scripts/bench_vsgnet.py [--images 64] [--workers 2] [--device cpu|cuda] [--pairs 30]

Makes a synthetic cache of full-size maps (1024 x 25 x 25 float16, as the extract stage
writes) in a temporary folder; nothing else is read or written.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from hoi.data import build_instances
from hoi.data.cache import FeatureFile, FeatureWriter, ImageProposals, ProposalFile, write_proposals
from hoi.hoi_config import load_config
from hoi.inputs.dataset import HOIDataset, collate, to_device
from hoi.inputs.pairs import PairConfig
from hoi.models.heads import build_head
from hoi.training.train_heads import build_optimizer, compute_loss


def make_cache(root: Path, n: int, channels: int, size: int, humans: int, objects: int,
               seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    names = [f"HICO_bench_{i:08d}.jpg" for i in range(n)]
    sizes = [(640, 480)] * n
    records, dets = [], []
    for _ in range(n):
        k = humans + objects
        xy = rng.uniform(1, 300, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(20, 300, (k, 2))], 1).clip(1, 480)
        labels = np.array([49] * humans + list(rng.integers(0, 49, objects)))
        dets.append(ImageProposals(boxes, rng.uniform(0.6, 1.0, k), labels))
        records.append({"boxes_h": [boxes[0].tolist()], "boxes_o": [boxes[humans].tolist()],
                        "hoi": [0],
                        "object": [int(labels[humans])], "verb": [0]})
    anno = build_instances(names, sizes, records)
    write_proposals(root / "det.h5", names, dets, {"detector": "bench"})
    w = FeatureWriter(root / "feat.h5", names, sizes, (channels, size, size), {"backbone": "bench"})
    for i in range(n):
        w.write(i, rng.standard_normal((channels, size, size)).astype(np.float16))
    w.close()
    return anno


def bench_loader(dataset: HOIDataset, batch: int, workers: int, epochs: int) -> tuple[float, float]:
    """(images/s, pairs/s) of the DataLoader alone, after its workers have started."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate,
                        num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    for _ in loader:  # start the workers and warm the page cache
        pass
    images = pairs = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for b in loader:
            images += b["features"].shape[0]
            pairs += b["pair_h"].shape[0]
    elapsed = time.perf_counter() - start
    return images / elapsed, pairs / elapsed


def bench_model(dataset: HOIDataset, batch: int, device: torch.device, steps: int,
                amp: bool) -> tuple[float, float]:
    """(images/s, pairs/s) of full training steps (forward, loss, backward, SGD) on batches held in
    memory."""
    cfg = load_config()
    model = build_head(cfg.model).to(device).train()
    opt, _ = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    batches = [to_device(collate([dataset[(s * batch + k) % len(dataset)] for k in range(batch)]),
                         device)
               for s in range(min(steps, 4))]

    def step(b):
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model(b)
        loss, _, _ = compute_loss(cfg, model, out, b, 1)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    step(batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    images = pairs = 0
    start = time.perf_counter()
    for s in range(steps):
        b = batches[s % len(batches)]
        step(b)
        images += b["features"].shape[0]
        pairs += b["pair_h"].shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return images / elapsed, pairs / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--channels", type=int, default=1024)
    p.add_argument("--map", type=int, default=25)
    p.add_argument("--humans", type=int, default=3, help="human detections per image")
    p.add_argument("--objects", type=int, default=5, help="non-person detections per image")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loader-epochs", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        anno = make_cache(root, args.images, args.channels, args.map, args.humans, args.objects)
        dataset = HOIDataset(anno, ProposalFile(root / "det.h5"), FeatureFile(root / "feat.h5"),
                             range(args.images), PairConfig(), with_labels=True)
        per_image = np.mean([dataset.pairs_of(k).num_pairs for k in range(len(dataset))])
        print(f"cache: {args.images} images of {args.channels}x{args.map}x{args.map} float16, "
              f"{per_image:.1f} pairs per image; batch {args.batch}; device {device}")
        li, lp = bench_loader(dataset, args.batch, args.workers, args.loader_epochs)
        print(f"loader ({args.workers} workers): {li:8.1f} images/s {lp:9.1f} pairs/s")
        mi, mp = bench_model(dataset, args.batch, device, args.steps, amp=device.type == "cuda")
        print(f"training ({device.type}):      {mi:8.1f} images/s {mp:9.1f} pairs/s")
        print(f"loader / training: {li / mi:.1f}x "
              f"{'(>= 3x: ok)' if li >= 3 * mi else '(< 3x: add workers)'}")


if __name__ == "__main__":
    main()
