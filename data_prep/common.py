"""Pieces shared by the preprocessing stages: sharding over torchrun ranks, provenance,
file names of per-rank parts."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hoi
from hoi.errors import run_main


def code_version() -> str:
    """The package version, with the git commit when running from a checkout."""
    root = Path(hoi.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{hoi.__version__}+g{commit}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return hoi.__version__


def shard(indices: Sequence[int], rank: int, world_size: int) -> list[int]:
    """This rank's disjoint share of ``indices`` (every world_size-th, starting at rank)."""
    return list(indices)[rank::world_size]


def rank_part(out: Path, rank: int, world_size: int) -> Path:
    """Where rank ``rank`` of ``world_size`` writes its part of ``out``."""
    return out.with_name(f"{out.name}.rank{rank}-of-{world_size}")


def run_stage(stage: Callable[[argparse.Namespace], Any],
              parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
              argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run a stage; bad input is one line, ``error: ...``, and exit status 2
    (``--debug`` or ``HOI_DEBUG=1`` for the traceback), see :mod:`hoi.errors`."""
    def body(args: list[str]) -> int:
        stage(parse_args(args))
        return 0

    return run_main(body, argv)
