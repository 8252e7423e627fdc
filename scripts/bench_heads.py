"""The interaction heads' training step alone, model-only (no loader): what decides its speed on
a GPU, measured anywhere.

    python scripts/bench_heads.py [--device cpu|cuda] [--images 16] [--humans 3] [--objects 5]
                                  [--steps 5] [--amp auto|off|fp16|bf16]

One step = forward, the loss, backward and the SGD step of the default VSGNet heads on a batch
shaped like Table XI's (``--images`` images of 1024 x 25 x 25 maps, ``--humans`` humans and
``--objects`` other objects each, the humans appended to the objects: (humans x (objects +
humans)) pairs per image). Prints, per step: operator calls (every aten op dispatched, forward
and backward and optimiser: each is a kernel launch or more on a GPU), wall time, pairs/s and
peak memory. On CUDA it then runs one more step under ``torch.cuda.set_sync_debug_mode("error")``
and says whether the step synchronised with the host.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hoi.hoi_config import load_config
from hoi.inputs.random_batch import random_batch
from hoi.models.heads import build_head
from hoi.training.train_heads import build_optimizer, compute_loss


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    if choice == "off" or (choice == "auto" and device.type != "cuda"):
        return None
    if choice == "bf16" or (choice == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def measure_step(device: torch.device, images: int = 16, humans: int = 3, objects: int = 5,
                 steps: int = 5, amp: str = "auto") -> dict:
    """The heads' training step on ``device``: operator calls, median wall time, pairs/s, peak
    memory and (CUDA) whether the step synchronised with the host."""
    torch.manual_seed(0)
    cfg = load_config()
    model = build_head(cfg.model).to(device).train()
    optimizer, _ = build_optimizer(cfg, model)
    batch = random_batch(images, humans, objects, labels=True)
    batch = {k: v.to(device) for k, v in batch.items()}
    batch["features"] = batch["features"].half()  # as the cache stores them
    dtype = amp_dtype(amp, device)
    pairs = int(batch["pair_h"].shape[0])

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(batch)
        loss, _, _ = compute_loss(cfg, model, out, batch, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step()  # warm-up (allocations, kernels' first use)
    sync()
    counter = OpCounter()
    with counter:
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    wall = sorted(times)[len(times) // 2]
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (CUDA allocated)"
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (process RSS)"
    syncs = None
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
            syncs = ""
        except RuntimeError as err:
            syncs = str(err).splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return {"calls": sum(counter.counts.values()), "top": counter.counts.most_common(8),
            "wall_s": wall, "pairs": pairs, "images": images, "pairs_per_s": pairs / wall,
            "images_per_s": images / wall, "peak": peak, "amp": dtype, "syncs": syncs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--humans", type=int, default=3)
    p.add_argument("--objects", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--amp", default="auto", choices=["auto", "off", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    r = measure_step(device, args.images, args.humans, args.objects, args.steps, args.amp)
    print(f"heads step, {args.images} images x {args.humans} humans x {args.objects} objects "
          f"({r['pairs']} pairs), device {device}"
          f"{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, "
          f"amp {r['amp'] if r['amp'] else 'off'}, {torch.get_num_threads()} CPU thread(s)")
    print("| operator calls per step | wall time per step (median) | pairs/s | peak memory |")
    print("|---|---|---|---|")
    print(f"| {r['calls']:,} | {r['wall_s'] * 1000:.1f} ms | {r['pairs_per_s']:,.0f} | "
          f"{r['peak']} |")
    print(f"most frequent: {', '.join(f'{name} {n}' for name, n in r['top'])}")
    if r["syncs"] is not None:
        note = ("none: the step ran under set_sync_debug_mode('error')" if not r["syncs"]
                else f"SYNCHRONISES: {r['syncs']}")
        print(f"host synchronisations in a step: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
