"""Check an annotation file and report every problem.

    python -m data_prep.validate instances_test2015.json [--max-report N]

Exit status 0 when the file is valid, 1 when it has problems, 2 when it cannot be read.
The checks are :func:`hoi.data.validate_annotations`, the ones every stage applies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from hoi.data.validation import validate_annotations

MAX_REPORT = 1000  # problems printed; the summary counts all of them


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.validate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="annotation JSON "
                                                "(docs/architecture.md#annotation-files)")
    parser.add_argument("--max-report", type=int, default=MAX_REPORT, help="problems to print")
    args = parser.parse_args(argv)
    try:
        with args.file.open(encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        print(f"{args.file}: cannot be read: {err}", file=sys.stderr)
        return 2
    problems = validate_annotations(data)
    for p in problems[: args.max_report]:
        print(f"{args.file}: {p}")
    if len(problems) > args.max_report:
        print(f"... {len(problems) - args.max_report} more")
    if problems:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(Counter(p.kind for p in problems).items()))
        print(f"{args.file}: {len(problems)} problems ({kinds})")
        return 1
    images = len(data["filenames"])
    pairs = sum(len(a["hoi"]) for a in data["annotation"])
    print(f"{args.file}: valid ({images} images, {pairs} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
