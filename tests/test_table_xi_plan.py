"""scripts/table_xi_plan.py: each Table XI row's disk need from the real map shape, and a row
that cannot fit refused in one line before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _plan(tmp_path: Path, *extra: str, images: int = 100) -> subprocess.CompletedProcess:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for split in ("train2015", "test2015"):
        (data / f"instances_{split}.json").write_text(json.dumps({"filenames": ["x"] * images}))
    return subprocess.run([sys.executable, str(REPO / "scripts" / "table_xi_plan.py"),
                           "--data", str(data), "--cache", str(tmp_path / "cache"), "--runs",
                           str(tmp_path / "runs"), *extra], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_each_row_needs_its_maps_in_float16_and_fits_alone(tmp_path) -> None:
    (tmp_path / "runs" / "vsgnet_resnet50").mkdir(parents=True)
    (tmp_path / "runs" / "vsgnet_resnet50" / "eval_test2015.json").write_text("{}")
    proc = _plan(tmp_path, "resnet50", "sac_resnet101")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split(" | ")[0].strip("| "): line for line in proc.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| row")}
    assert "done" in rows["resnet50"]
    # 200 images x 1024 x 25 x 25 x 2 bytes (+2 %): 261 MB
    assert "261.1 MB" in rows["sac_resnet101"] and "fits" in rows["sac_resnet101"]


def test_a_row_that_cannot_fit_is_refused_in_one_line(tmp_path) -> None:
    # 4000 x 4000 inputs: 250 x 250 maps, 128 MB an image, 2.6 TB for 2 x 10,000 images
    proc = _plan(tmp_path, "--input-size", "4000", "4000", "--ngpu", "2", "resnet50",
                 images=10_000)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "resnet50 needs" in err and "CACHE=DIR" in err
    assert "DOES NOT FIT" in proc.stdout and "2 parts merged" in proc.stdout
