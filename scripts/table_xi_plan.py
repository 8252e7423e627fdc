"""The disk plan of scripts/reproduce_table_xi.sh, printed and checked before its first row.

    python scripts/table_xi_plan.py --data DATA --cache CACHE --runs RUNS [--ngpu N]
                                    [--keep-caches] [--input-size 400 400] ARCH [ARCH ...]

Each row (backbone) needs its train and test feature files: images x C x H x W x 2 bytes
(float16), its map shape taken from the backbone itself (built on PyTorch's meta device, no
weights read). Rows run one at a time and a row's cache is deleted after its evaluation, so each
row must fit alone in the free space of the cache's filesystem (``--keep-caches``: all rows
together). With several GPUs each process writes its part and the parts are then merged, so a
split's merge holds it twice (train is extracted first: the peak is the larger of twice train
and train plus twice test). Rows already evaluated (``RUNS/vsgnet_ARCH/
eval_test2015.json``) need nothing; a row's files already there count as space it has. A row
that cannot fit ends the script in one line, exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hoi.engine.disk import free_bytes, human_bytes
from hoi.models.backbones import backbone_config
from hoi.models.extractor import build_extractor, map_shape

SPLITS = ("train2015", "test2015")
FEATURE_BYTES = 2  # float16
MARGIN = 1.02  # HDF5 metadata, provenance, done flags


def feature_bytes(arch: str, images: int, input_size: tuple[int, int]) -> int:
    """Bytes of ``images`` maps of ``arch`` at ``input_size``."""
    extractor, _ = build_extractor(backbone_config(arch), "none", stage=4)
    c, h, w = map_shape(extractor.to(torch.device("meta")), input_size)
    return int(images * c * h * w * FEATURE_BYTES * MARGIN)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--ngpu", type=int, default=1)
    p.add_argument("--keep-caches", action="store_true")
    p.add_argument("--input-size", type=int, nargs=2, default=[400, 400])
    p.add_argument("archs", nargs="+")
    args = p.parse_args(argv)
    counts = {}
    for split in SPLITS:
        anno = args.data / f"instances_{split}.json"
        try:
            counts[split] = len(json.loads(anno.read_text())["filenames"])
        except (OSError, ValueError, KeyError) as err:
            print(f"error: {anno}: expected an annotation file with 'filenames' ({err})",
                  file=sys.stderr)
            return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    free = free_bytes(args.cache)
    factor = 2 if args.ngpu > 1 else 1  # a merge of parts
    mode = ("caches kept" if args.keep_caches
            else "one row at a time, its cache deleted after its evaluation")
    merge = f", {args.ngpu} parts merged" if factor > 1 else ""
    print(f"[table-xi] plan: cache {args.cache} ({human_bytes(free)} free), "
          f"{counts['train2015']:,} train + {counts['test2015']:,} test images, {mode}{merge}")
    print("| row | features | peak on disk | there already | status |")
    print("|---|---:|---:|---:|---|")
    needed_total, refused = 0, []
    for arch in args.archs:
        if (args.runs / f"vsgnet_{arch}" / "eval_test2015.json").is_file():
            print(f"| {arch} | - | - | - | done |")
            continue
        train, test = (feature_bytes(arch, counts[s], tuple(args.input_size)) for s in SPLITS)
        size = train + test
        there = sum(f.stat().st_size for f in (args.cache / arch).glob("*") if f.is_file()) \
            if (args.cache / arch).is_dir() else 0
        # merging a split's parts holds it twice; train is extracted (and merged) first
        peak = max(2 * train, train + 2 * test) if factor > 1 else size
        needed = max(peak - there, 0)
        needed_total += needed
        fits = (needed_total if args.keep_caches else needed) <= free
        print(f"| {arch} | {human_bytes(size)} | {human_bytes(peak)} | {human_bytes(there)} | "
              f"{'fits' if fits else 'DOES NOT FIT'} |")
        if not fits:
            want = needed_total if args.keep_caches else needed
            refused.append(f"{arch} needs {human_bytes(want)}")
    if refused:
        print(f"error: {args.cache}: {human_bytes(free)} free, but {'; '.join(refused)} of "
              "features "
              "(expected a cache folder with room for one row: CACHE=DIR on a larger disk, or a "
              "RAM disk such as /dev/shm where memory allows"
              f"{'; or without KEEP_CACHES=1' if args.keep_caches else ''})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
