#!/usr/bin/env python
"""How long making a features file takes at HICO-DET's size, and what it holds on disk.

    python scripts/bench_cache_create.py [--images 38118 9658] [--shape 1024 25 25] [--dir DIR]

The file is made as ``data_prep.extract`` makes it (hoi.data.cache.FeatureWriter: the chunk
index complete from the start, chunks never pre-filled, under ``.tmp`` then renamed), reopened
as a resumed run reopens it, and deleted. Prints one row per image count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from hoi.data.cache import FeatureWriter
from hoi.engine.disk import human_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, nargs="+", default=[38118, 9658])
    p.add_argument("--shape", type=int, nargs=3, default=[1024, 25, 25], metavar=("C", "H", "W"))
    p.add_argument("--dir", default=None, help="where to make the files (default: a temporary "
                                               "folder)")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        print("| images | map | make (s) | reopen (s) | file size (apparent) | on disk |")
        print("|---:|---|---:|---:|---:|---:|")
        for n in args.images:
            names = [f"HICO_train2015_{i:08d}.jpg" for i in range(n)]
            path = root / f"features_{n}.h5"
            start = time.perf_counter()
            FeatureWriter(path, names, [[640, 480]] * n, tuple(args.shape), {"bench": True}).close()
            made = time.perf_counter() - start
            start = time.perf_counter()
            FeatureWriter(path, names, [[640, 480]] * n, tuple(args.shape), {"bench": True}).close()
            reopened = time.perf_counter() - start
            st = os.stat(path)
            print(f"| {n} | {'x'.join(map(str, args.shape))} float16 | {made:.3f} | {reopened:.3f} "
                  f"| {human_bytes(st.st_size)} | {human_bytes(st.st_blocks * 512)} |")
            path.unlink()
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
