"""Benchmark ``hoi diagnose`` against ``hoi eval`` on the full test set with about a million
detections.

    python scripts/bench_diagnose.py [--anno instances_test2015.json] [--base noisy.npz]
                                     [--target 1000000] [--runs 3] [--no-check]

The detection set is the one of ``scripts/bench_eval.py`` (``noisy`` replicated with fresh box
jitter and scores). On one thread, prints the median (min / max) time of: the evaluation
(Default, and both settings), the diagnosis (matching, error types, the nine rescorings), its
JSON form and its pictures; then, once, the naive way (``evaluate`` on each of the nine filtered
files) and whether its mAP gains equal the diagnosis's bit for bit.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
sys.path.insert(0, str(REPO / "scripts"))

from bench_eval import JITTER_PX, SEED, SHARED, replicate  # noqa: E402

from hoi.data import hico_metadata, load_annotations  # noqa: E402
from hoi.evaluation import HOIResults, evaluate  # noqa: E402
from hoi.evaluation.diagnose import ERROR_TYPES, diagnose, summary_table, without_error_type  # noqa: E402
from hoi.vis.diagnosis_plots import save_diagnosis_figures  # noqa: E402


def timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anno", type=Path, default=SHARED / "instances_test2015.json")
    parser.add_argument("--base", type=Path, default=SHARED / "eval_reference" / "noisy.npz")
    parser.add_argument("--target", type=int, default=1_000_000, help="number of detections")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="skip the naive nine evaluations")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    warnings.simplefilter("ignore")

    anno = load_annotations(args.anno)
    det = replicate(HOIResults.load(args.base), args.target, np.random.default_rng(SEED))
    names = hico_metadata().hoi_names
    print(f"annotations: {args.anno} ({len(anno['filenames'])} images)")
    print(f"detections: {len(det):,} ({args.base.name} replicated, jitter {JITTER_PX} px), 1 "
          f"thread, {args.runs} runs")

    rows = []
    for label, fn in (("hoi eval, Default", lambda: evaluate(anno, det, "default")),
                      ("hoi eval, both settings", lambda: evaluate(anno, det, "both"))):
        times, _ = timed(fn, args.runs)
        rows.append((label, times))
    times, diag = timed(lambda: diagnose(anno, det), args.runs)
    rows.append(("diagnose (match, types, 9 rescorings)", times))
    times, report = timed(lambda: diag.to_dict(names), args.runs)
    rows.append(("  its JSON form (to_dict)", times))
    with tempfile.TemporaryDirectory() as tmp:
        times, _ = timed(lambda: save_diagnosis_figures(report, tmp), args.runs)
    rows.append(("  its pictures (2 PNG)", times))

    same = None
    if not args.no_check:
        base = evaluate(anno, det, "default")["default"]
        t0 = time.perf_counter()
        naive = {t: evaluate(anno, without_error_type(det, diag, t),
                             "default")["default"] for t in ERROR_TYPES}
        rows.append(("naive: evaluate 9 filtered files", [time.perf_counter() - t0]))
        same = all(report["map_gain_if_removed"][t] == {"full": r.full - base.full,
                                                        "rare": r.rare_map - base.rare_map,
                                                        "non_rare": r.non_rare_map
                                                        - base.non_rare_map}
                   for t, r in naive.items())

    header = f"| {'step':<40} | {'median s':>8} | {'min s':>6} | {'max s':>6} |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for label, times in rows:
        print(f"| {label:<40} | {statistics.median(times):>8.2f} | {min(times):>6.2f} | "
              f"{max(times):>6.2f} |")
    if same is not None:
        print("mAP gains equal to evaluate() on the filtered files, bit for bit: "
              f"{'yes' if same else 'NO'}")
    print()
    print(summary_table(report, labels=("1M",)))
    return 0 if same is not False else 1


if __name__ == "__main__":
    sys.exit(main())
