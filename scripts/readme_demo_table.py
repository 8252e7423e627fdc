#!/usr/bin/env python
"""Write the README's demo table from a demo's own ``summary.json``, so the two cannot drift.

    python scripts/readme_demo_table.py outputs/demo/summary.json  # copy to docs/, rewrite README
    python scripts/readme_demo_table.py --check       # does README match docs/demo_summary.json?

The summary is copied to ``docs/demo_summary.json`` (the committed source of the table) and the
block between the two ``demo-table`` markers of README.md is replaced by its rendering;
``--check`` exits 1 when the README's block is not that rendering.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("docs/demo_summary.json")
BEGIN = ("<!-- demo-table:begin (scripts/readme_demo_table.py writes this block from "
         "docs/demo_summary.json) -->")
END = "<!-- demo-table:end -->"


def render(summary: dict) -> str:
    """The README block (markers included) for a demo ``summary.json``."""
    counts = summary.get("num_classes") or {}
    source = {"jittered_gt": "detections = jittered GT boxes",
              "detectron2": "detections = Detectron2"}.get(summary.get("detections"),
                                                           str(summary.get("detections")))
    lines = [BEGIN,
             f"Wall time of the run that made this table: **{summary['wall_min']:.1f} min**. Its "
             "table (mAP %, "
             f"synthetic test set, averaged over the {counts.get('full', '?')} HOI classes "
             f"present, {counts.get('rare', '?')} of them rare; {source}):",
             "",
             "| model | Full | Rare | Non-Rare |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['full']:.2f} | {r['rare']:.2f} | {r['non_rare']:.2f} |"
              for r in summary["rows"]]
    if summary.get("pretrain"):
        lines += ["", "Backbone pretraining on the crops: "
                  + "; ".join(f"{arch} {p['top1']:.1f} % validation top-1 after {p['epochs']} "
                              "epochs"
                              for arch, p in summary["pretrain"].items()) + "."]
    lines.append(END)
    return "\n".join(lines)


def replace_block(text: str, block: str, readme: Path) -> str:
    """``text`` with its marker block replaced by ``block``; SystemExit naming ``readme`` without
    markers."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no demo-table block (expected a line '{BEGIN}' and a later "
                         f"'{END}')")
    return text[:start] + block + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("summary", nargs="?", type=Path,
                   help="a demo's summary.json (omit with --check)")
    p.add_argument("--root", type=Path, default=ROOT, help="repository root (README.md, docs/)")
    p.add_argument("--check", action="store_true", help="only compare the README with "
                                                        "docs/demo_summary.json")
    args = p.parse_args(argv)
    readme, source = args.root / "README.md", args.root / SOURCE
    if args.summary is not None and not args.check:
        try:
            summary = json.loads(args.summary.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{args.summary}: not a readable demo summary.json ({exc})") from None
        source.write_text(json.dumps(summary, indent=1) + "\n")
    summary = json.loads(source.read_text())
    text = readme.read_text()
    new = replace_block(text, render(summary), readme)
    if args.check:
        if new != text:
            print(f"{readme}: the demo table differs from {source}; run python "
                  f"scripts/readme_demo_table.py --root {args.root} "
                  f"{source}", file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
