#!/usr/bin/env python
"""Throughput of the feature stage and the size of the cache.

    python scripts/bench_extract.py [--images 16] [--device cpu|cuda]
           [--backbones resnet50,sac_resnet50]

Writes ``--images`` JPEGs of HICO-DET's typical size (640x480, photos from scikit-image),
runs ``data_prep.extract`` on them (400x400 input, layer3, float16) for each backbone and
prints images/s (the stage's own loop: image decoding in the workers, the forward, the
HDF5 writes; model building excluded) and the bytes per image of the HDF5 cache, with the
disk space the whole of HICO-DET (38,118 + 9,658 images) needs at that rate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import tempfile
from pathlib import Path

import torch
from PIL import Image

from data_prep.extract import extract, parse_args
from hoi.data import build_instances

HICO_IMAGES = 38118 + 9658


def make_images(root: Path, n: int) -> Path:
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backbones", default="resnet50,sac_resnet50")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"CPU, {args.threads} thread(s)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_images(Path(tmp), args.images)
        for arch in args.backbones.split(","):
            out = root / f"{arch}.h5"
            common = ["--images", str(root / "images"), "--anno", str(root / "anno.json"),
                      "--backbone", arch,
                      "--weights", "none", "--batch-size", str(args.batch_size), "--workers",
                      str(args.workers),
                      "--device", args.device]
            log = io.StringIO()
            with contextlib.redirect_stdout(log):  # the stage reports images/s of its loop
                extract(parse_args([*common, "--out", str(out)]))
            rate = re.search(r"\(([\d.]+) images/s", log.getvalue())
            if rate is None:
                raise RuntimeError(f"no throughput line in the extract log:\n{log.getvalue()}")
            per_image = out.stat().st_size / args.images
            rows.append((arch, float(rate.group(1)), per_image))
    print(f"# Feature extraction ({device}; 400x400 input, layer3 1024x25x25 float16; "
          f"{args.images} images of 640x480, batch {args.batch_size}, {args.workers} loader "
          "workers)")
    print("| backbone | images/s | cache per image (MB) | HICO-DET cache (GB, 47,776 images) |")
    print("|---|---:|---:|---:|")
    for arch, ips, per_image in rows:
        print(f"| {arch} | {ips:.2f} | {per_image / 1e6:.3f} | {per_image * HICO_IMAGES / 1e9:.1f} "
              "|")


if __name__ == "__main__":
    main()
