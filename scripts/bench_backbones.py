#!/usr/bin/env python
"""Forward latency of ResNet-50, GC-ResNet-50 and SAC-ResNet-50 (paper placement: last block
of stages 2-4), and the peak memory of one SAC block at detection resolution.

    python scripts/bench_backbones.py [--repeats 7] [--threads 1] [--device cpu|cuda]

Latency: median over ``--repeats`` timed forwards (after warm-up), models interleaved so that
drift on a shared machine hits them all alike; ratios are to ResNet-50 at the same input. A
second table times the attention blocks alone at the shapes they see inside the network, a
cost figure that the noise of whole-network timings cannot hide.
Memory: each SAC/GC block runs alone in a fresh process on the feature map that an 800x1333
image gives at its stage; the figure is the growth of the process's peak resident set (CPU) or
``max_memory_allocated`` (CUDA) during its first forward on that map (input excluded), next to the
size of an N x N float
matrix that a non-local block would need.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from hoi.models.attention import create_attention
from hoi.models.backbones import backbone_config, create_backbone

MODELS = [
    ("ResNet-50", "resnet50", []),
    ("GC-ResNet-50", "gc_resnet50", []),
    ("SAC-ResNet-50", "sac_resnet50", []),
    ("SAC-ResNet-50 (Eq.5 as written)", "sac_resnet50", ["attention.options.order=paper"]),
]
SETTINGS = [((224, 224), 8), ((400, 400), 1)]
# (stage, channels at the SAC position, stride) for an 800x1333 input
SAC_STAGES = [(2, 64, 4), (3, 128, 8), (4, 256, 16)]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build_models(device: str) -> dict[str, torch.nn.Module]:
    return {label: create_backbone(arch, overrides=ov).eval().to(device) for label, arch,
            ov in MODELS}


def latency_table(models: dict[str, torch.nn.Module], repeats: int, device: str) -> list[dict]:
    rows = []
    for (h, w), batch in SETTINGS:
        x = torch.randn(batch, 3, h, w, device=device)
        times: dict[str, list[float]] = {label: [] for label in models}
        with torch.inference_mode():
            for model in models.values():  # warm-up
                model(x)
            for _ in range(repeats):
                for label, model in models.items():
                    _sync(device)
                    start = time.perf_counter()
                    model(x)
                    _sync(device)
                    times[label].append(time.perf_counter() - start)
        base = statistics.median(times["ResNet-50"])
        for label, values in times.items():
            med = statistics.median(values)
            rows.append({"input": f"{h}x{w} b{batch}", "model": label, "ms": med * 1e3,
                         "ratio": med / base})
    return rows


def block_overhead_table(models: dict[str, torch.nn.Module], repeats: int,
                         device: str) -> list[dict]:
    """Time the attention blocks alone, at the shapes they see inside the network: a figure of
    their cost that the noise of whole-network timings on a shared machine does not drown."""
    from hoi.models.backbones import attention_modules

    rows = []
    for (h, w), batch in SETTINGS:
        x = torch.randn(batch, 3, h, w, device=device)
        for label, model in models.items():
            blocks = attention_modules(model)
            if not blocks:
                continue
            inputs: list[torch.Tensor] = []
            hooks = [b.register_forward_pre_hook(lambda m, a, inputs=inputs:
                                                 inputs.append(a[0].detach()))
                     for b in blocks]
            with torch.inference_mode():
                model(x)
            for hook in hooks:
                hook.remove()
            times = []
            with torch.inference_mode():
                for block, inp in zip(blocks, inputs):  # warm-up
                    block(inp)
                for _ in range(repeats * 3):
                    _sync(device)
                    start = time.perf_counter()
                    for block, inp in zip(blocks, inputs):
                        block(inp)
                    _sync(device)
                    times.append(time.perf_counter() - start)
            rows.append({"input": f"{h}x{w} b{batch}", "model": label, "blocks": len(blocks),
                         "ms": statistics.median(times) * 1e3})
    return rows


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (this benchmark needs Linux)")


def _block_peak(kind: str, channels: int, h: int, w: int, device: str) -> int:
    """Run in a child process: peak memory growth (bytes) of one forward of one block.

    On CPU: the peak resident set (VmHWM, reset through /proc/self/clear_refs just before the
    forward) minus the resident set before it. ru_maxrss would not do: Linux carries it over
    from the parent through fork and exec.
    """
    block = create_attention(kind, channels).to(device).eval()
    with torch.no_grad():  # give the zero-initialised projections real values
        for p in block.parameters():
            p.normal_(0, 0.01)
    x = torch.randn(1, channels, h, w, device=device)
    with torch.inference_mode():
        block(x[:, :, :8, :8])  # warm-up on a small map: code paths, not the allocator's peak
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            block(x)
            return torch.cuda.max_memory_allocated() - before
        before = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        block(x)
        return (_status_kib("VmHWM") - before) * 1024


def memory_table(device: str) -> list[dict]:
    rows = []
    for stage, channels, stride in SAC_STAGES:
        h, w = -(-800 // stride), -(-1333 // stride)
        n = h * w
        for kind, c in (("sac", channels), ("gc", channels)):
            out = subprocess.run(
                [sys.executable, __file__, "--_block", kind, str(c), str(h), str(w), "--device",
                 device],
                capture_output=True, text=True, check=True,
            )
            rows.append({
                "stage": stage, "block": kind, "map": f"{c}x{h}x{w}", "N": n,
                "peak_mib": int(out.stdout.strip()) / 2**20,
                "input_mib": c * n * 4 / 2**20, "nxn_mib": n * n * 4 / 2**20,
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", default=None, help="also write the tables to this JSON file")
    parser.add_argument("--_block", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args._block:
        kind, c, h, w = args._block
        print(_block_peak(kind, int(c), int(h), int(w), args.device))
        return
    backbone_config("sac_resnet50")  # fail early on a broken install
    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else f"CPU, {args.threads} thread(s)")
    print(f"# Backbone forward latency ({device_name}; median of {args.repeats}; torch "
          f"{torch.__version__})")
    models = build_models(args.device)
    lat = latency_table(models, args.repeats, args.device)
    print("| input | model | ms | x ResNet-50 |\n|---|---|---:|---:|")
    for r in lat:
        print(f"| {r['input']} | {r['model']} | {r['ms']:.1f} | {r['ratio']:.3f} |")
    base = {r["input"]: r["ms"] for r in lat if r["model"] == "ResNet-50"}
    over = block_overhead_table(models, args.repeats, args.device)
    print("\n# The attention blocks alone, at their in-network shapes (median)")
    print("| input | model | blocks | ms | % of ResNet-50's forward |\n|---|---|---:|---:|---:|")
    for r in over:
        print(f"| {r['input']} | {r['model']} | {r['blocks']} | {r['ms']:.2f} | "
              f"{100 * r['ms'] / base[r['input']]:.2f} |")
    print("\n# Peak memory of one attention block, 800x1333 image")
    mem = memory_table(args.device)
    print("| stage | block | map (C x H x W) | N | peak growth (MiB) | input map (MiB) | one N x N "
          "matrix (MiB) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in mem:
        print(f"| {r['stage']} | {r['block']} | {r['map']} | {r['N']} | {r['peak_mib']:.1f} | "
              f"{r['input_mib']:.1f} | {r['nxn_mib']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"latency": lat, "blocks": over, "memory": mem, "device": device_name}, f,
                      indent=2)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
