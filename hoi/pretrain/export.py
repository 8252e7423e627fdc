"""From a training checkpoint to the backbone file that the feature extractor loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hoi.config import build_config, to_dict
from hoi.engine.checkpoint import CheckpointError, atomic_save, load_checkpoint
from hoi.models.backbones import AttentionResNet, BackboneConfig, upgrade_backbone_record
from hoi.pretrain.recipe import recipe_from_checkpoint
from hoi.provenance import file_sha256


def export_backbone(checkpoint: str | Path, out: str | Path) -> tuple[Path, str]:
    """Write ``{"backbone": state_dict, "config": backbone config, "sha256_of_source": ...}``
    (plus the epoch, validation metrics, class names and the pretraining recipe,
    :func:`hoi.pretrain.recipe.recipe_from_checkpoint`) to ``out``, and its sha256 to
    ``out + ".sha256"`` (``sha256sum -c`` format). Returns (out, sha256 of out).

    The weights are checked to fit the recorded config before anything is written.
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
    atomic_save(payload, out)
    digest = file_sha256(out)
    Path(f"{out}.sha256").write_text(f"{digest}  {out.name}\n")
    return out, digest
