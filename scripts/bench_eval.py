"""Benchmark the HICO-DET evaluator on the full test set with about a million detections.

    python scripts/bench_eval.py [--anno instances_test2015.json] [--base noisy.npz]
                                 [--target 1000000] [--runs 5]

The reference ``noisy`` detection set is replicated with fresh box jitter and fresh scores up
to ``--target`` rows, then evaluated on one thread; prints the median (and min / max) time per
setting and the peak memory.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from hoi.data import load_annotations  # noqa: E402
from hoi.evaluation import HOIResults, evaluate  # noqa: E402

SHARED = Path(os.environ.get("HOI_SHARED", REPO.parent / "shared")) / "hicodet"
JITTER_PX = 3.0  # std of the box jitter of each replica, pixels
SEED = 0


def replicate(base: HOIResults, target: int, rng: np.random.Generator) -> HOIResults:
    """``base`` repeated until ``target`` rows; copies after the first get jittered boxes
    (kept well ordered) and new uniform scores."""
    reps = max(1, -(-target // max(len(base), 1)))
    parts = [base]
    for _ in range(reps - 1):
        boxes = []
        for b in (base.boxes_h, base.boxes_o):
            j = b + rng.normal(0.0, JITTER_PX, size=b.shape)
            x1, x2 = np.minimum(j[:, 0], j[:, 2]), np.maximum(j[:, 0], j[:, 2])
            y1, y2 = np.minimum(j[:, 1], j[:, 3]), np.maximum(j[:, 1], j[:, 3])
            boxes.append(np.stack([x1, y1, x2, y2], axis=1))
        parts.append(HOIResults(base.image_index, boxes[0], boxes[1], base.object, base.hoi,
                                   rng.random(len(base))))
    cat = lambda k: np.concatenate([getattr(p, k) for p in parts])  # noqa: E731
    return HOIResults(cat("image_index"), cat("boxes_h"), cat("boxes_o"), cat("object"), cat("hoi"),
                      cat("score"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anno", type=Path, default=SHARED / "instances_test2015.json")
    parser.add_argument("--base", type=Path, default=SHARED / "eval_reference" / "noisy.npz")
    parser.add_argument("--target", type=int, default=1_000_000, help="number of detections")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    anno = load_annotations(args.anno)
    det = replicate(HOIResults.load(args.base), args.target, np.random.default_rng(SEED))
    print(f"annotations: {args.anno} ({len(anno['filenames'])} images)")
    print(f"detections: {len(det):,} ({args.base.name} replicated, jitter {JITTER_PX} px), "
          f"1 thread, {args.runs} runs")

    rows = []
    for setting in ("default", "known_object", "both"):
        times = []
        for _ in range(args.runs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                result = evaluate(anno, det, setting)
                times.append(time.perf_counter() - t0)
        maps = " / ".join(f"{100 * r.full:.2f}" for r in result.settings.values())
        rows.append((setting, statistics.median(times), min(times), max(times), maps))

    tracemalloc.start()
    evaluate(anno, det, "both")
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux

    header = (f"| {'setting':<13} | {'median s':>8} | {'min s':>6} | {'max s':>6} | "
              f"{'Full mAP %':>15} |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for setting, med, lo, hi, maps in rows:
        print(f"| {setting:<13} | {med:>8.2f} | {lo:>6.2f} | {hi:>6.2f} | {maps:>15} |")
    print(f"peak memory: {traced_peak / 2**20:.0f} MiB traced by tracemalloc during one 'both' "
          f"evaluation; process peak RSS {rss_peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
