"""The files of one split (annotations, proposals, features), found from the run's templates and
opened together, refused before any work when they do not belong together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hoi.config import NON_NEGATIVE, SEED, Check, to_dict
from hoi.data.cache import CacheError, FeatureFile, ProposalFile
from hoi.data.validation import load_valid_annotations
from hoi.engine.checkpoint import arch_mismatch
from hoi.inputs.dataset import SplitFiles, check_inputs
from hoi.models.backbones import backbone_config, upgrade_backbone_record
from hoi.provenance import ProvenanceMismatch, annotation_fingerprint, annotation_mismatch, resolve

log = logging.getLogger("hoi")


@dataclass
class DataConfig:
    RANGES: ClassVar[dict[str, Check]] = {
        "val_fraction": Check(ge=0, lt=1, why="0: nothing held out"), "val_seed": SEED,
        "workers": NON_NEGATIVE,
    }

    root: str = "data/hicodet"
    # file templates; {root}, {split} and {arch} are filled in
    annotations: str = "{root}/instances_{split}.json"
    detections: str = "{root}/cache/detections_{split}.h5"
    features: str = "{root}/cache/{arch}/features_{split}.h5"
    train_split: str = "train2015"
    test_split: str = "test2015"
    val_fraction: float = 0.05  # of the training images, held out for model selection
    val_seed: int = 0  # the held-out images depend on this seed only
    workers: int = 4  # DataLoader worker processes per training process
    # deprecated, kept so that saved configs load: false accepts features of another backbone
    # (with a warning), as allow_mismatch does
    check_backbone: bool = True
    # use caches made from another annotation / backbone anyway (recorded): every provenance check
    allow_mismatch: bool = False


# how open_split's refusals name the way past them, unless the caller names its own
ALLOW_FLAG = "--allow-mismatch (data.allow_mismatch=true)"


class BackboneMismatch(ProvenanceMismatch, CacheError):
    """Features extracted with another backbone than the run's (or recording none)."""


def backbone_mismatches(features: FeatureFile, arch: str) -> list[str]:
    """Why ``features`` are not maps of backbone ``arch`` (empty if they are)."""
    found = features.provenance.get("backbone")
    if found is None:
        return [f"{features.path}: its provenance records no backbone, so it cannot be checked "
                "against this run's"]
    diff = arch_mismatch(upgrade_backbone_record(found), to_dict(backbone_config(arch)))
    if not diff:
        return []
    return [f"{features.path} was extracted with another backbone than this run's ({arch}): "
            + "; ".join(d.replace(": checkpoint ", ": features ") for d in diff)]


def data_path(data: DataConfig, kind: str, split: str, arch: str) -> Path:
    """The file of ``kind`` (annotations, detections, features) of ``split``."""
    return Path(getattr(data, kind).format(root=data.root, split=split, arch=arch))


def open_split(data: DataConfig, arch: str, channels: int, split: str,
               annotations: str | Path | None = None, detections: str | Path | None = None,
               features: str | Path | None = None,
               allow_flag: str = ALLOW_FLAG) -> SplitFiles:
    """The annotation, proposal and feature files of ``split`` (paths from ``data``'s templates
    unless given), checked before any work to belong together (the caches' recorded annotation
    fingerprints, image lists and sizes), to the backbone ``arch`` and to maps of ``channels``
    channels. Provenance mismatches (annotation fingerprints, backbone) are refused in one line
    naming ``allow_flag`` unless ``data.allow_mismatch`` (then recorded in
    :attr:`SplitFiles.accepted_mismatches`); what cannot work at all (images missing from a
    cache, other image sizes, other channel counts) is refused whatever the flag."""
    paths = {
        "annotations": Path(annotations) if annotations else data_path(data, "annotations", split,
                                                                       arch),
        "detections": Path(detections) if detections else data_path(data, "detections", split,
                                                                    arch),
        "features": Path(features) if features else data_path(data, "features", split, arch),
    }
    if not paths["annotations"].is_file():
        raise FileNotFoundError(f"annotation file not found: {paths['annotations']} "
                                "(data.annotations / --anno)")
    anno = load_valid_annotations(paths["annotations"])
    fingerprint = annotation_fingerprint(paths["annotations"], anno)
    proposals, feats = ProposalFile(paths["detections"]), FeatureFile(paths["features"])
    accepted = resolve([annotation_mismatch(f.path, f.provenance, paths["annotations"], fingerprint)
                        for f in (proposals, feats)], data.allow_mismatch, allow_flag)
    other_backbone = backbone_mismatches(feats, arch)
    if other_backbone and not data.check_backbone and not data.allow_mismatch:
        log.warning("data.check_backbone=false is deprecated: use %s (it goes past every "
                    "provenance check)", allow_flag)
    accepted += resolve(other_backbone, data.allow_mismatch or not data.check_backbone,
                        allow_flag, error=BackboneMismatch)
    files = SplitFiles(anno, proposals, feats, str(paths["annotations"]), fingerprint, accepted)
    check_inputs(anno, files.detections, files.features, range(len(anno["filenames"])), None,
                 channels, str(paths["annotations"]))
    return files
