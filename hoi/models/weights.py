"""Loading weights into the backbones: torchvision's ImageNet ResNets or our own checkpoints.

Sources accepted by :func:`load_backbone_weights`:

- ``"torchvision"``: torchvision's ImageNet-1k (V1) weights for the model's depth, downloaded
  to the torch hub cache where the network allows. Without network the error says so and
  how to pass the file instead.
- a path to a ``.pth``/``.pt`` file holding a state dict, a training checkpoint of ours
  (``{"model": ...}``), an exported backbone (``{"backbone": ...}``) or ``{"state_dict": ...}``.
  ``module.`` prefixes (DDP) are removed.

A file with a ``<file>.sha256`` beside it (``sha256sum -c`` format, what ``hoi export-backbone``
writes) must match it, and a file written by ``hoi export-backbone`` must have it
(:func:`verify_checksum`): a damaged copy, or weights whose export was interrupted, are refused
in one line. An export renames the weights first and the checksum second (the weights' rename is
the commit): between the two, the checksum waits in ``<file>.sha256.tmp.<host>-<pid>``, which
counts (and is moved into place once its writer no longer runs).

Attention blocks start as the identity, so loading a plain ResNet's weights into a SAC/GC
ResNet leaves only the attention parameters missing: that case is allowed and reported.
Any other mismatch is an error listing the missing and unexpected keys, unless ``strict=False``.
"""

from __future__ import annotations

import glob
import os
import re
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hoi.engine.run_lock import tag_is_stale
from hoi.errors import UserError
from hoi.models.attention import attention_classes
from hoi.models.backbones import AttentionResNet
from hoi.provenance import file_sha256

TORCHVISION_WEIGHTS = {
    50: "ResNet50_Weights",
    101: "ResNet101_Weights",
    152: "ResNet152_Weights",
}


class WeightsError(UserError, RuntimeError):
    """A weights file that cannot be read, or does not fit the model."""


@dataclass
class LoadReport:
    """What happened when loading: the keys left at their initial value and those ignored."""

    source: str
    missing_attention: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    sha256: str | None = None


def torchvision_url(depth: int) -> str:
    """Download URL of torchvision's ImageNet (V1) weights for ResNet-``depth``."""
    import torchvision.models as tvm

    enum = getattr(tvm, TORCHVISION_WEIGHTS[depth])
    return enum.IMAGENET1K_V1.url


def _download_torchvision(depth: int) -> dict[str, torch.Tensor]:
    url = torchvision_url(depth)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
    except (urllib.error.URLError, OSError) as err:
        name = url.rsplit("/", 1)[-1]
        raise WeightsError(
            f"could not download torchvision's ImageNet weights for ResNet-{depth} from {url} "
            f"({err}). This machine seems to have no network access. Download {name} on a "
            f"machine that has, copy it here and pass its path instead of 'torchvision' "
            f"(e.g. --weights /path/to/{name}), or place it in {torch.hub.get_dir()}/checkpoints/."
        ) from err


CHECKSUM_SUFFIX = ".sha256"
EXPORT_MARK = "sha256_of_source"  # a key only hoi export-backbone's files hold


def checksum_path(path: str | Path) -> Path:
    """``<path>.sha256``, the checksum file of weights file ``path``."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def checksum_line(digest: str, path: str | Path) -> str:
    """The content of a checksum file (``sha256sum -c`` format)."""
    return f"{digest}  {Path(path).name}\n"


def read_checksum(path: str | Path) -> str | None:
    """The sha256 a checksum file records (None if it is missing or holds none)."""
    try:
        words = Path(path).read_text(errors="replace").split()
    except OSError:
        return None
    if words and re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
        return words[0].lower()
    return None


def pending_checksums(path: str | Path) -> list[tuple[Path, str]]:
    """Checksum files of ``path`` still under their temporary name (an export between its two
    renames, or killed there), with the writer's tag."""
    path = Path(path)
    prefix = checksum_path(path).name + ".tmp."
    if not path.parent.is_dir():
        return []
    return [(p, p.name[len(prefix):])
            for p in sorted(path.parent.glob(glob.escape(prefix) + "*"))]


def verify_checksum(path: str | Path, required: bool, digest: str | None = None) -> str:
    """The sha256 of weights file ``path``, checked against its ``<path>.sha256``.

    Refused (:class:`WeightsError`, one line) when the checksum file records another sha256, or
    when it is missing and ``required`` (files of ``hoi export-backbone``). A checksum that an
    export left under its temporary name after renaming the weights (killed between its two
    renames) completes the pair, and is moved into place once its writer no longer runs."""
    path = Path(path)
    digest = digest or file_sha256(path)
    sidecar = checksum_path(path)
    recorded = read_checksum(sidecar)
    if recorded == digest:
        return digest
    for pending, tag in pending_checksums(path):
        if read_checksum(pending) == digest:  # the export committed the weights, then stopped
            if tag_is_stale(tag):
                try:
                    os.replace(pending, sidecar)
                except OSError:
                    pass
            return digest
    again = (f"export it again (hoi export-backbone CKPT {path})" if required else
             f"replace {sidecar.name} with this file's sha256 if it is the file you mean")
    if recorded is None and sidecar.exists():
        raise WeightsError(f"{path}: its checksum file {sidecar} holds no sha256 (expected "
                           f"'<sha256>  {path.name}'); {again}")
    if recorded is None:
        if not required:
            return digest
        raise WeightsError(f"{path}: its checksum file {sidecar} is missing (an interrupted "
                           f"export, or a copy without it); {again}, or copy {sidecar.name} "
                           f"along with it")
    raise WeightsError(f"{path}: sha256 {digest[:12]} is not the {recorded[:12]} recorded in "
                       f"{sidecar} (a damaged or partly copied file, or one replaced after its "
                       f"export); {again}, or copy both files again")


def _read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], bool]:
    """The state dict of ``path`` and whether the file was written by ``hoi export-backbone``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"{path}: not a readable PyTorch weights file ({type(err).__name__}: {err})"
        ) from err
    exported = isinstance(obj, dict) and EXPORT_MARK in obj
    if isinstance(obj, dict):
        for key in ("backbone", "model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    is_state = isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())
    if not is_state or not obj:
        raise WeightsError(
            f"{path}: expected a state dict (parameter name -> tensor), or a checkpoint with a "
            f"'model', 'backbone' or 'state_dict' entry; found {type(obj).__name__}"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}, exported


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from any of the accepted file layouts (see the module docstring)."""
    return _read_weights(path)[0]


def _natural(key: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _format_keys(keys: list[str], limit: int = 20) -> str:
    keys = sorted(keys, key=_natural)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_backbone_weights(
    model: AttentionResNet,
    source: str | Path,
    *,
    strict: bool = True,
    ignore_classifier: bool = False,
) -> LoadReport:
    """Load ``source`` into ``model`` (see the module docstring) and say what was loaded.

    Args:
        model: the backbone to fill.
        source: ``"torchvision"`` or a file path.
        strict: if True (default) any key mismatch other than absent attention parameters
            raises WeightsError listing the missing and unexpected keys.
        ignore_classifier: skip ``fc.*`` (e.g. another number of classes).
    """
    report = LoadReport(source=str(source))
    if str(source) == "torchvision":
        state = _download_torchvision(model.config.depth)
    else:
        state, exported = _read_weights(source)
        report.sha256 = verify_checksum(source, required=exported)
    own = model.state_dict()
    if ignore_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own_keys = {k for k in own if not k.startswith("fc.")}
    else:
        own_keys = set(own)

    attention_types = attention_classes()  # read now: blocks registered after import count
    attention_keys = {
        f"{name}.{key}"
        for name, module in model.named_modules()
        if isinstance(module, attention_types)
        for key in module.state_dict()
    }
    source_has_attention = any(k in attention_keys for k in state)
    missing = sorted(own_keys - set(state))
    unexpected = sorted(set(state) - set(own))
    if not source_has_attention:
        report.missing_attention = [k for k in missing if k in attention_keys]
        missing = [k for k in missing if k not in attention_keys]
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own_keys & set(state)
        if state[k].shape != own[k].shape
    ]
    report.missing, report.unexpected = missing, unexpected
    if mismatched:
        raise WeightsError(
            f"{source}: shapes do not match the model: {_format_keys(sorted(mismatched))}"
        )
    if strict and (missing or unexpected):
        raise WeightsError(
            f"{source}: weights do not match the model "
            f"(ResNet-{model.config.depth}, attention={model.config.attention.type}).\n"
            f"  missing keys ({len(missing)}): {_format_keys(missing) or '-'}\n"
            f"  unexpected keys ({len(unexpected)}): {_format_keys(unexpected) or '-'}\n"
            f"Pass strict=False (--non-strict) to load the matching keys only."
        )
    loadable = {k: v for k, v in state.items() if k in own_keys}
    model.load_state_dict(loadable, strict=False)
    return report


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
