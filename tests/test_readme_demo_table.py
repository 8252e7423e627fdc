"""The README's demo table is generated from a demo's summary.json
(scripts/readme_demo_table.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_demo_table",
                                               REPO / "scripts" / "readme_demo_table.py")
table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table)

SUMMARY = {"rows": [{"model": "VSGNet + ResNet-50", "full": 12.34, "rare": 5.6, "non_rare": 78.9}],
           "num_classes": {"full": 26, "rare": 7, "non_rare": 19}, "wall_min": 6.789,
           "pretrain": {"resnet50": {"epochs": 6, "top1": 55.56}}, "detections": "jittered_gt"}


def test_the_readme_matches_the_committed_demo_summary() -> None:
    assert table.main(["--check"]) == 0
    summary = json.loads((REPO / table.SOURCE).read_text())
    readme = (REPO / "README.md").read_text()
    for row in summary["rows"]:  # every figure of the summary is in the README
        assert (f"| {row['model']} | {row['full']:.2f} | {row['rare']:.2f} "
                f"| {row['non_rare']:.2f} |") in readme


def test_the_block_is_rewritten_from_a_summary(tmp_path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"intro\n{table.BEGIN}\nold numbers\n{table.END}\noutro\n")
    src = tmp_path / "summary.json"
    src.write_text(json.dumps(SUMMARY))
    assert table.main([str(src), "--root", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "old numbers" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "| VSGNet + ResNet-50 | 12.34 | 5.60 | 78.90 |" in text and "**6.8 min**" in text
    assert "26 HOI classes present, 7 of them rare" in text
    assert "55.6 % validation top-1 after 6 epochs" in text
    assert table.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "README.md").write_text(text.replace("12.34", "12.35"))
    assert table.main(["--check", "--root", str(tmp_path)]) == 1
