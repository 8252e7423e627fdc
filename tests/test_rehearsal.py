"""scripts/rehearse_full_scale.sh at a tiny fraction: every stage runs through the project's own
writers and CLIs (the provenance checks of train/test/eval accept what it made) and the cost
records have the promised fields and plausible values."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ["convert_train", "convert_test", "detect_train", "detect_test", "features_train",
          "features_test",
          "train", "bench_rates", "test", "eval"]


def test_tiny_fraction(tmp_path, shared_dir) -> None:
    out = tmp_path / "rehearsal"
    env = {**os.environ, "HOI_PYTHON": sys.executable, "HOI_SHARED": str(shared_dir),
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "rehearse_full_scale.sh"), "--out",
                           str(out),
                           "--fraction", "0.001", "--iters", "2", "--batches", "1", "--channels",
                           "16"],
                          env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["stage"]: r for r in json.loads((out / "costs.json").read_text())}
    assert list(rows) == STAGES
    for r in rows.values():
        assert r["wall_s"] > 0 and r["peak_rss_mb"] > 10 and r["disk_mb"] >= 0, r
    n_train, n_test = math.ceil(0.001 * 38118), math.ceil(0.001 * 9658)
    assert rows["detect_train"]["images"] == n_train and rows["detect_test"]["images"] == n_test
    assert rows["features_train"]["images"] == n_train
    # 16 channels of 25x25 float16 per image (plus HDF5 metadata)
    assert rows["features_train"]["disk_mb"] >= n_train * 16 * 625 * 2 / 2**20
    features = rows["features_train"]
    assert features["disk_mb_at_1024ch"] == round(features["disk_mb"] * 64, 1)
    assert rows["train"]["images"] == 2 * 16 and rows["train"]["iterations"] == 2
    assert rows["bench_rates"]["loader_images_per_s"] > 0
    assert rows["bench_rates"]["model_1024ch_train_images_per_s"] > 0
    assert rows["test"]["images"] == n_test and rows["eval"]["detections"] > 0
    evaluation = json.loads((out / "eval.json").read_text())
    assert {"default", "known_object"} <= set(evaluation)
    md = (out / "costs.md").read_text()
    assert "| features_train |" in md and "16 of the real 1024 channels" in md


def test_peak_memory_is_the_stages_own_not_the_drivers(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    from rehearse_full_scale import run_measured

    ballast = bytearray(400 * 2**20)  # the driver's resident size, which a spawned child
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # inherits in wait4's ru_maxrss
    small = run_measured("small", [sys.executable, "-c", "pass"], tmp_path, tmp_path / "s.log")
    assert small["peak_rss_mb"] < 100, small
    # a peak that lasts a fraction of a second is still seen (its own high-water mark)
    code = ("import time; b = bytearray(300 * 2**20); b[::4096] = b'\\x01' * len(b[::4096]); "
            "del b; time.sleep(0.3)")
    brief = run_measured("brief", [sys.executable, "-c", code], tmp_path, tmp_path / "b.log")
    assert 300 <= brief["peak_rss_mb"] < 380, brief
    del ballast
