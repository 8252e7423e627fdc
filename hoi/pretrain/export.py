"""From a training checkpoint to the backbone file that the feature extractor loads.

The weights and their checksum (``<out>.sha256``) are written as one unit: both are made under
temporary names of this process (``<out>.tmp.<host>-<pid>``, ``<out>.sha256.tmp.<host>-<pid>``)
and made durable, then the weights are renamed into place (the commit), then the checksum. A kill
before the commit leaves the old pair; after it, the new weights with their checksum, still under
its temporary name if the kill came between the two renames, where the reader
(:func:`hoi.models.weights.verify_checksum`) counts it and moves it into place. Two exports to one
file never run at once (:func:`hoi.engine.run_lock.hold_run_lock` on ``<out>.lock``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hoi.config import build_config, to_dict
from hoi.engine.checkpoint import CheckpointError, fsync_dir, load_checkpoint
from hoi.engine.disk import disk_full_as_error, remove_stale
from hoi.engine.run_lock import hold_run_lock, tag_is_stale, temp_tag
from hoi.models.backbones import AttentionResNet, BackboneConfig, upgrade_backbone_record
from hoi.models.weights import (
    checksum_line,
    checksum_path,
    pending_checksums,
    read_checksum,
)
from hoi.pretrain.recipe import recipe_from_checkpoint
from hoi.provenance import file_sha256


def first_non_finite(state: dict[str, torch.Tensor]) -> tuple[str, int, int] | None:
    """(name, count, size) of the first tensor of ``state`` holding NaN or infinite values."""
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                return name, bad, tensor.numel()
    return None


def export_backbone(checkpoint: str | Path, out: str | Path) -> tuple[Path, str]:
    """Write ``{"backbone": state_dict, "config": backbone config, "sha256_of_source": ...}``
    (plus the epoch, validation metrics, class names and the pretraining recipe,
    :func:`hoi.pretrain.recipe.recipe_from_checkpoint`) to ``out``, and its sha256 to
    ``out + ".sha256"`` (``sha256sum -c`` format), as one unit (see the module docstring).
    Returns (out, sha256 of out).

    The weights are checked to fit the recorded config, and to be finite, before anything is
    written.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    ckpt = load_checkpoint(checkpoint)
    missing = [k for k in ("arch", "model") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{checkpoint}: not a training checkpoint of `hoi pretrain` (missing {missing}; "
            f"expected 'arch' (the backbone config) and 'model' (its weights))"
        )
    config = build_config(BackboneConfig, base=upgrade_backbone_record(ckpt["arch"]))
    state = {k.removeprefix("module."): v for k, v in ckpt["model"].items()}
    bad = first_non_finite(state)
    if bad is not None:
        name, count, size = bad
        raise CheckpointError(
            f"{checkpoint}: tensor '{name}' holds {count} NaN or infinite value(s) of {size} "
            f"(expected finite weights: the run diverged; export a checkpoint from before it)")
    try:
        AttentionResNet(config).load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{checkpoint}: weights do not fit its recorded backbone config: "
                              f"{err}") from err
    payload: dict[str, Any] = {
        "backbone": state,
        "config": to_dict(config),
        "sha256_of_source": file_sha256(checkpoint),
        "source": checkpoint.name,
        "epoch": int(ckpt.get("epoch", -1)) + 1,  # epochs done
        "metrics": dict(ckpt.get("metrics", {})),
        "classes": list(ckpt.get("classes", [])),
        "recipe": recipe_from_checkpoint(ckpt),
    }
    with hold_run_lock(out, "hoi export-backbone", folder=False):
        digest = save_with_checksum(payload, out)
    return out, digest


def _durable_write(path: Path, write: Any) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def settle_export(out: Path) -> None:
    """Finish what an export killed at ``out`` left: a committed checksum still under its
    temporary name is moved into place; the temporary files of writers that no longer run are
    deleted (never a live writer's)."""
    if out.is_file():
        sidecar = checksum_path(out)
        pending = [(p, tag) for p, tag in pending_checksums(out) if tag_is_stale(tag)]
        if pending and read_checksum(sidecar) != (digest := file_sha256(out)):
            for p, _ in pending:
                if read_checksum(p) == digest:
                    os.replace(p, sidecar)
                    fsync_dir(out.parent)
                    break
    weights_prefix = out.name + ".tmp."
    stale = [p for p in out.parent.glob(f"{out.name}.tmp.*")
             if tag_is_stale(p.name[len(weights_prefix):])]
    stale += [p for p, tag in pending_checksums(out) if tag_is_stale(tag)]
    remove_stale(stale)


def save_with_checksum(payload: Any, out: str | Path) -> str:
    """``torch.save(payload)`` to ``out`` and its sha256 to ``out.sha256``, as one unit (see
    the module docstring); returns the sha256."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settle_export(out)
    tag = temp_tag()
    tmp_weights = out.with_name(f"{out.name}.tmp.{tag}")
    tmp_sum = checksum_path(out).with_name(f"{checksum_path(out).name}.tmp.{tag}")
    try:
        with disk_full_as_error(out, "exporting the backbone"):
            _durable_write(tmp_weights, lambda f: torch.save(payload, f))
            digest = file_sha256(tmp_weights)
            _durable_write(tmp_sum, lambda f: f.write(checksum_line(digest, out).encode()))
    except BaseException:
        tmp_weights.unlink(missing_ok=True)
        tmp_sum.unlink(missing_ok=True)
        raise
    # the commit: from here on the new pair is the file (an interruption from here on leaves the
    # checksum under its temporary name, where the reader finds it)
    os.replace(tmp_weights, out)
    fsync_dir(out.parent)
    os.replace(tmp_sum, checksum_path(out))
    fsync_dir(out.parent)
    return digest
