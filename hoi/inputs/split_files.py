"""The files of one split (annotations, proposals, features), found from the run's templates and
opened together, refused before any work when they do not belong together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hoi.config import to_dict
from hoi.data.cache import FeatureFile, ProposalFile
from hoi.data.validation import load_valid_annotations
from hoi.inputs.dataset import SplitFiles, check_inputs
from hoi.models.backbones import backbone_config
from hoi.provenance import annotation_fingerprint, annotation_mismatch, resolve


@dataclass
class DataConfig:
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
    check_backbone: bool = True  # refuse features whose provenance names another backbone
    # use caches made from another annotation / backbone anyway (recorded)
    allow_mismatch: bool = False


def data_path(data: DataConfig, kind: str, split: str, arch: str) -> Path:
    """The file of ``kind`` (annotations, detections, features) of ``split``."""
    return Path(getattr(data, kind).format(root=data.root, split=split, arch=arch))


def open_split(data: DataConfig, arch: str, channels: int, split: str,
               annotations: str | Path | None = None, detections: str | Path | None = None,
               features: str | Path | None = None,
               allow_flag: str = "data.allow_mismatch=true") -> SplitFiles:
    """The annotation, proposal and feature files of ``split`` (paths from ``data``'s templates
    unless given), checked before any work to belong together (the caches' recorded annotation
    fingerprints, image lists and sizes), to the backbone ``arch`` (when ``data.check_backbone``)
    and to maps of ``channels`` channels. Mismatches are refused unless ``data.allow_mismatch``
    (then recorded in :attr:`SplitFiles.accepted_mismatches`)."""
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
    files = SplitFiles(anno, proposals, feats, str(paths["annotations"]), fingerprint, accepted)
    backbone = to_dict(backbone_config(arch)) if data.check_backbone else None
    check_inputs(anno, files.detections, files.features, range(len(anno["filenames"])), backbone,
                 channels, str(paths["annotations"]))
    return files
