"""Disk space and temporary files: refuse early when what a stage will write does not fit,
turn a disk that fills anyway into one line, and clear what a killed run left behind."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hoi.errors import DiskFullError

SAFETY_FACTOR = 1.05  # estimates of HDF5 payloads leave out metadata and chunk index
SAFETY_BYTES = 16 << 20


def human_bytes(n: float) -> str:
    """``1.5 GB``-style size (powers of 1000, as ``df -H``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def require_free_space(path: str | Path, needed: int, what: str) -> None:
    """Raise :class:`DiskFullError` unless ``needed`` bytes (plus a margin) fit beside ``path``."""
    want = int(needed * SAFETY_FACTOR) + SAFETY_BYTES
    free = free_bytes(path)
    if free < want:
        raise DiskFullError(
            f"{path}: writing {what} needs about {human_bytes(needed)}, but only "
            f"{human_bytes(free)} are free on "
            f"its disk (expected at least {human_bytes(want)}); free some space or write elsewhere"
        )


def is_disk_full(err: BaseException) -> bool:
    """An error of a write that ran out of space (h5py reports it as OSError or ValueError text)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return any(s in text for s in ("No space left on device", "errno = 28", "Disk quota exceeded"))


@contextmanager
def disk_full_as_error(path: str | Path, what: str) -> Iterator[None]:
    """Re-raise a disk-full error of the block as one :class:`DiskFullError` line."""
    try:
        yield
    except DiskFullError:
        raise
    except (OSError, ValueError, RuntimeError) as err:
        if not is_disk_full(err):
            raise
        raise DiskFullError(f"{path}: the disk filled up while {what}; free some space and rerun "
                            f"the same command: finished work is kept and the run resumes") from err


def remove_stale(paths: Iterable[Path], log=None) -> list[Path]:
    """Delete temporary files an interrupted run left behind; returns those removed."""
    removed = []
    for p in paths:
        if p.is_file():
            p.unlink()
            removed.append(p)
            if log is not None:
                log(f"removed {p} (left by an interrupted run)")
    return removed
