"""scripts/gpu_check.sh --quick --device cpu: every check of the GPU machine's first run, at toy
size, passes on the CPU, and the report has the promised shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKS = ["env", "ops", "detect", "extract", "fp16", "pretrain_resume", "ddp", "vsgnet_train",
          "test_eval", "heads_step", "loader", "decode", "pretrain_feed", "stage_feed", "disk",
          "plan"]


def test_quick_cpu_run_passes(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOI_PYTHON": sys.executable,
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--quick", "--device",
                           "cpu", "--out", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["name"]: r for r in report["checks"]}
    assert list(rows) == CHECKS
    for row in rows.values():
        assert set(row) >= {"name", "status", "figure", "detail"}
        assert row["status"] == "pass", row
        assert f"| {row['name']} | pass |" in proc.stdout  # the printed table
    assert "identical" in rows["pretrain_resume"]["figure"]
    assert "gloo" in rows["ddp"]["detail"] and "pairs/s" in rows["vsgnet_train"]["figure"]
    assert report["meta"] == {**report["meta"], "device": "cpu", "quick": True}
    assert "operator calls" in rows["heads_step"]["detail"]
    assert "sync check: CUDA only" in rows["heads_step"]["detail"]
    assert "1 worker " in rows["loader"]["figure"] and "/dev/shm" in rows["disk"]["figure"]
    # the plan: six rows with disk and times, from the rates measured above
    plan = (tmp_path / "table_xi_plan.md").read_text()
    assert plan.count("| ") >= 8 and "| sac_resnet101 |" in plan and "limited by" in plan
    assert "h per row" in rows["plan"]["figure"]
    # the pretraining feeder beside its step, and the hours of the paper's recipe it gives
    assert "cpu decode: loader" in rows["pretrain_feed"]["figure"]
    assert "device decode: loader" in rows["pretrain_feed"]["figure"]
    assert "sac_resnet50" in rows["pretrain_feed"]["detail"]
    assert "ImageNet pretraining h (100 epochs)" in plan and "| sac_resnet50 |" in plan
    assert "ImageNet pretraining resnet50" in rows["plan"]["detail"]
    # extraction and detection: each side alone, the loop, the limit
    assert "extract" in rows["stage_feed"]["figure"] and "-bound" in rows["stage_feed"]["figure"]
    assert "writer" in rows["stage_feed"]["detail"]
