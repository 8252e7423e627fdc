"""Checkpoints that survive a crash mid-write and refuse to resume another architecture.

A checkpoint is a dict; by convention it holds ``arch`` (a plain dict describing the model,
e.g. the backbone config) next to whatever the training loop needs (``model``, ``optimizer``,
``scheduler``, ``scaler``, ``epoch``, ``rng``, ``config``). Only tensors and plain Python
values go in, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import torch

from hoi.engine.disk import disk_full_as_error
from hoi.engine.run_lock import tag_is_stale, temp_tag
from hoi.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is missing, unreadable or made for another model."""


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader (or a crash) sees either the old file or the complete new one, never half of it.
    The temporary file, ``.<name>.<host>-<pid>.tmp``, is this process's own: the temporary files
    that killed runs left are deleted, those of a live writer never
    (:func:`hoi.engine.run_lock.tag_is_stale`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_checkpoint_path(path)
    try:
        with disk_full_as_error(path, "saving a checkpoint"), open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | Path) -> None:
    """Make the renames in ``folder`` durable (where the file system allows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_checkpoint_path(path: str | Path) -> Path:
    """Where this process writes ``path`` before renaming it: ``.<name>.<host>-<pid>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{temp_tag()}.tmp")


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`atomic_save` for ``path`` that killed runs (or this
    process) left; those of another live process are kept. Returns those deleted."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}."
    stale = [p for p in path.parent.glob(f"{glob.escape(prefix)}*.tmp")
             if tag_is_stale(p.name[len(prefix):-len(".tmp")])]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def arch_mismatch(saved: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """``key: saved -> expected`` for every (flattened) key whose values differ."""
    a, b = _flatten(saved), _flatten(expected)
    return [
        f"{key}: checkpoint {a.get(key, '<absent>')!r}, this run {b.get(key, '<absent>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, "<absent>") != b.get(key, "<absent>")
    ]


def load_checkpoint(
    path: str | Path,
    expected_arch: dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint; if ``expected_arch`` is given, refuse one whose ``arch`` differs.

    Raises CheckpointError naming the file and, for another architecture, every differing key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(ckpt).__name__}")
    if expected_arch is not None:
        check_arch(ckpt, expected_arch, path)
    return ckpt


def check_arch(ckpt: dict[str, Any], expected_arch: dict[str, Any], source: str | Path) -> None:
    """Raise CheckpointError unless ``ckpt["arch"]`` is ``expected_arch``, listing every
    differing key."""
    if "arch" not in ckpt:
        raise CheckpointError(
            f"{source}: has no 'arch' entry, so it cannot be checked against this run's model "
            f"(expected a training checkpoint written by this project; keys: {sorted(ckpt)[:10]})"
        )
    diff = arch_mismatch(ckpt["arch"], expected_arch)
    if diff:
        raise CheckpointError(
            f"{source}: made for another architecture than this run's; differences:\n  "
            + "\n  ".join(diff)
        )
