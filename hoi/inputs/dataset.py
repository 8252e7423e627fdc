"""The HOI dataset over the three files of a split: annotations (JSON), detections (HDF5)
and cached backbone feature maps (HDF5), one item per image, plus the batch collation.

The feature file is opened lazily in each DataLoader worker (:class:`FeatureFile`), never
inherited across fork. :func:`check_inputs` refuses files that do not belong together; each map
is checked for NaN and infinite values as it is read (:func:`check_finite_map`), so a damaged
features file stops training and ``hoi test`` with its name and the image's instead of scoring
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hoi.data.cache import CacheError, FeatureFile, ProposalFile
from hoi.engine.checkpoint import arch_mismatch
from hoi.inputs.pairs import PairConfig, image_pairs
from hoi.models.backbones import upgrade_backbone_record

PAIR_KEYS = ("pair_h", "pair_o")


def check_inputs(
    anno: Mapping[str, Any],
    detections: ProposalFile,
    features: FeatureFile,
    indices: Sequence[int],
    backbone: dict[str, Any] | None,
    channels: int,
    anno_source: str = "annotations",
) -> None:
    """Raise CacheError unless the annotation images ``indices`` all have detections and
    features, the feature file's image sizes agree with the annotations, its maps have
    ``channels`` channels, and (when ``backbone`` is given) its provenance names that backbone."""
    names = [anno["filenames"][i] for i in indices]
    for source, index in ((detections.path, detections.index), (features.path, features.index)):
        missing = [n for n in names if n not in index]
        if missing:
            raise CacheError(
                f"{source} does not belong to {anno_source}: {len(missing)} of its {len(names)} "
                f"images are missing from it, e.g. {missing[:3]}"
            )
    for i, name in zip(indices, names):
        got = [int(v) for v in features.image_sizes[features.index[name]]]
        want = [int(v) for v in anno["size"][i]]
        if got != want:
            raise CacheError(f"{features.path}: image {name} has size {got} there but {want} in "
                             f"{anno_source}")
    if features.shape[0] != channels:
        raise CacheError(f"{features.path}: feature maps have {features.shape[0]} channels, the "
                         f"model expects {channels} (model.in_channels)")
    if backbone is not None:
        found = features.provenance.get("backbone")
        if found is None:
            raise CacheError(f"{features.path}: its provenance records no backbone, so it cannot "
                             "be checked "
                             f"against this run's (set data.check_backbone=false to use it anyway)")
        diff = arch_mismatch(upgrade_backbone_record(found), backbone)
        if diff:
            raise CacheError(f"{features.path} was extracted with another backbone than this "
                             "run's:\n  "
                             + "\n  ".join(d.replace(": checkpoint ", ": features ") for d in diff))


class HOIDataset(Dataset):
    """One item per annotation image in ``indices``: its feature map and its pairs.

    Args:
        anno: the loaded annotation dict (docs/architecture.md#annotation-files).
        detections, features: the split's detection and feature files.
        indices: annotation image indices that make up this dataset.
        pairs: the pair-building config.
        with_labels: compute the pairs' verb labels from the GT.
        add_gt_boxes: add the GT boxes to the proposals (training).
    """

    def __init__(
        self,
        anno: Mapping[str, Any],
        detections: ProposalFile,
        features: FeatureFile,
        indices: Sequence[int],
        pairs: PairConfig,
        with_labels: bool = True,
        add_gt_boxes: bool = False,
    ) -> None:
        self.anno = anno
        self.detections = detections
        self.features = features
        self.indices = [int(i) for i in indices]
        self.cfg = pairs
        self.with_labels = with_labels
        self.add_gt_boxes = add_gt_boxes

    def __len__(self) -> int:
        return len(self.indices)

    def pairs_of(self, k: int):
        """The :class:`ImagePairs` of item ``k`` (no feature read)."""
        i = self.indices[k]
        name = self.anno["filenames"][i]
        record = self.anno["annotation"][i] if (self.with_labels or self.add_gt_boxes) else None
        return image_pairs(self.detections.by_name(name), self.cfg, record, self.add_gt_boxes)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i = self.indices[k]
        name = self.anno["filenames"][i]
        pairs = self.pairs_of(k)
        stored = read_stored(self.features, self.features.index[name])
        check_finite_map(stored, self.features.path, name)
        fmap = torch.from_numpy(stored)
        item = {
            "index": i,
            "features": fmap,
            "image_size": torch.as_tensor(self.anno["size"][i], dtype=torch.float32),
            "boxes_h": pairs.boxes_h, "scores_h": pairs.scores_h,
            "boxes_o": pairs.boxes_o, "scores_o": pairs.scores_o, "labels_o": pairs.labels_o,
            "pair_h": pairs.pair_h, "pair_o": pairs.pair_o,
        }
        if pairs.labels is not None:
            item["labels"] = pairs.labels
        return item


def read_stored(features: FeatureFile, i: int) -> np.ndarray:
    """Map ``i`` (C, H, W) in the file's own dtype (float16): half the bytes of float32 to pass
    from a worker to the main process, and no conversion on the worker's CPU (it takes 3x
    longer than the read); the model casts it to float32 on the device."""
    return features.get(i, dtype=None)


FLOAT16_EXPONENT, FLOAT16_ABS = 0x7C00, 0x7FFF  # all exponent bits set: inf or NaN


def check_finite_map(fmap: np.ndarray, path: Any, name: str) -> None:
    """Raise CacheError naming the features file ``path`` and the image ``name`` when the map
    holds a NaN or an infinite value. For float16 (the cache's dtype) the test reads the bits
    (exponent all ones), some 15x faster than ``np.isfinite`` on a 1024 x 25 x 25 map."""
    if fmap.dtype == np.float16:
        bad = fmap.size and int((fmap.view(np.uint16) & FLOAT16_ABS).max()) >= FLOAT16_EXPONENT
    else:
        bad = not np.isfinite(fmap).all()
    if bad:
        count = int((~np.isfinite(fmap)).sum())
        raise CacheError(f"{path}: the feature map of image {name} holds {count} NaN or infinite "
                         "values (expected finite features); the file is damaged or was extracted "
                         "with a diverged backbone: extract it again")


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Batch of B images -> one dict of tensors, boxes and pairs concatenated over images.

    Keys: ``features`` (B, C, H, W) as stored (float16); ``image_size`` (B, 2) [w, h]; ``index``
    (B,) annotation
    image indices; ``boxes_h`` (Nh, 4), ``scores_h``, ``image_h`` (Nh,); ``boxes_o`` (No, 4),
    ``scores_o``, ``labels_o``, ``image_o`` (No,); ``pair_h``, ``pair_o`` (P,) indices into the
    batch's human / object lists; ``pair_image`` (P,); ``labels`` (P, V) when the items have them.
    """
    out: dict[str, torch.Tensor] = {
        "features": torch.stack([it["features"] for it in items]),
        "image_size": torch.stack([it["image_size"] for it in items]),
        "index": torch.as_tensor([it["index"] for it in items], dtype=torch.int64),
    }
    for key in ("boxes_h", "scores_h", "boxes_o", "scores_o", "labels_o"):
        out[key] = torch.cat([it[key] for it in items])
    nh = torch.as_tensor([len(it["boxes_h"]) for it in items])
    no = torch.as_tensor([len(it["boxes_o"]) for it in items])
    npairs = torch.as_tensor([len(it["pair_h"]) for it in items])
    image = torch.arange(len(items))
    out["image_h"] = image.repeat_interleave(nh)
    out["image_o"] = image.repeat_interleave(no)
    out["pair_image"] = image.repeat_interleave(npairs)
    offset_h = torch.cumsum(nh, 0) - nh
    offset_o = torch.cumsum(no, 0) - no
    out["pair_h"] = torch.cat([it["pair_h"] for it in items]) + offset_h.repeat_interleave(npairs)
    out["pair_o"] = torch.cat([it["pair_o"] for it in items]) + offset_o.repeat_interleave(npairs)
    if all("labels" in it for it in items):
        out["labels"] = torch.cat([it["labels"] for it in items])
    return out


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a batch on ``device`` (the model casts the float16 maps there)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class SplitFiles:
    """The three files of one split, opened (features lazily), with the annotation file's
    fingerprint and the provenance mismatches the user accepted (``--allow-mismatch``)."""

    anno: dict[str, Any]
    detections: ProposalFile
    features: FeatureFile
    anno_path: str = "<annotations>"
    fingerprint: dict[str, Any] | None = None
    accepted_mismatches: list[str] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        """What a model trained or tested on these files was made from (:mod:`hoi.provenance`)."""
        return {"annotation": self.fingerprint, "detections": self.detections.provenance,
                "features": self.features.provenance,
                "accepted_mismatches": list(self.accepted_mismatches),
                "files": {"annotations": str(self.anno_path),
                          "detections": str(self.detections.path),
                          "features": str(self.features.path)}}
