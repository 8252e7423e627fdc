"""Opening a split's files for a run, the seeded validation split carved from train, and
the samplers and loaders of training and inference."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from hoi.config import ConfigError, to_dict
from hoi.data.annotations import size_known
from hoi.data.cache import FeatureFile, ProposalFile
from hoi.data.validation import load_valid_annotations
from hoi.engine.distributed import ShardedSampler
from hoi.engine.logging import LOGGER_NAME
from hoi.hoi_config import HOITrainConfig, data_path
from hoi.inputs.dataset import HOIDataset, SplitFiles, check_inputs, collate
from hoi.models.backbones import backbone_config
from hoi.provenance import annotation_fingerprint, annotation_mismatch, resolve

VAL_SPLIT_NAME = "val_split.json"
log = logging.getLogger(LOGGER_NAME)


def open_split(cfg: HOITrainConfig, split: str, annotations: str | Path | None = None,
               detections: str | Path | None = None, features: str | Path | None = None,
               allow_flag: str = "data.allow_mismatch=true") -> SplitFiles:
    """The annotation, detection and feature files of ``split`` (paths from the config unless
    given), checked before any work to belong together (the caches' recorded annotation
    fingerprints, image lists and sizes) and to this run's backbone and model. Mismatches are
    refused unless ``cfg.data.allow_mismatch`` (then recorded in :attr:`SplitFiles.accepted_mismatches`)."""
    paths = {
        "annotations": Path(annotations) if annotations else data_path(cfg.data, "annotations", split, cfg.arch),
        "detections": Path(detections) if detections else data_path(cfg.data, "detections", split, cfg.arch),
        "features": Path(features) if features else data_path(cfg.data, "features", split, cfg.arch),
    }
    if not paths["annotations"].is_file():
        raise FileNotFoundError(f"annotation file not found: {paths['annotations']} (data.annotations / --anno)")
    anno = load_valid_annotations(paths["annotations"])
    fingerprint = annotation_fingerprint(paths["annotations"], anno)
    dets, feats = ProposalFile(paths["detections"]), FeatureFile(paths["features"])
    accepted = resolve([annotation_mismatch(f.path, f.provenance, paths["annotations"], fingerprint)
                        for f in (dets, feats)], cfg.data.allow_mismatch, allow_flag)
    files = SplitFiles(anno, dets, feats, str(paths["annotations"]), fingerprint, accepted)
    backbone = to_dict(backbone_config(cfg.arch)) if cfg.data.check_backbone else None
    check_inputs(anno, files.detections, files.features, range(len(anno["filenames"])), backbone,
                 cfg.model.in_channels, str(paths["annotations"]))
    return files


def carve_validation(num_images: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted image indices: a seeded random ``fraction`` of the images held out."""
    rng = np.random.default_rng(seed)
    n_val = int(round(fraction * num_images))
    val = np.sort(rng.permutation(num_images)[:n_val])
    train = np.setdiff1d(np.arange(num_images), val)
    return train, val


def validation_split(cfg: HOITrainConfig, anno: Mapping[str, Any], output_dir: Path, write: bool) -> tuple[np.ndarray, np.ndarray]:
    """The run's (train, val) split; saved as ``val_split.json`` in the output folder, and
    checked against that file when it exists (a resumed run must hold out the same images)."""
    train, val = carve_validation(len(anno["filenames"]), cfg.data.val_fraction, cfg.data.val_seed)
    record = {"seed": cfg.data.val_seed, "fraction": cfg.data.val_fraction,
              "val_filenames": [anno["filenames"][i] for i in val]}
    path = output_dir / VAL_SPLIT_NAME
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["val_filenames"] != record["val_filenames"]:
            raise ConfigError(f"{path}: holds another validation split than this config makes "
                              f"(seed {saved['seed']}, fraction {saved['fraction']}); use another output_dir")
    elif write:
        path.write_text(json.dumps(record, indent=1))
    return train, val


def subset_annotations(anno: Mapping[str, Any], indices: Sequence[int]) -> dict[str, Any]:
    """The annotation dict restricted to images ``indices`` (in that order)."""
    idx = [int(i) for i in indices]
    sub = dict(anno)
    sub["filenames"] = [anno["filenames"][i] for i in idx]
    sub["size"] = [anno["size"][i] for i in idx]
    sub["annotation"] = [anno["annotation"][i] for i in idx]
    sub["empty"] = [k for k, i in enumerate(idx) if len(anno["annotation"][i]["hoi"]) == 0]
    return sub


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of a seeded per-epoch shuffle, cut into ``world_size`` equal parts: rank r gets
    part r of every global batch, so k processes see the same global batches as one.

    Args:
        length: dataset size; batch_size: the global batch (divisible by world_size).
        drop_last: drop the last incomplete global batch (always when distributed).
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, max_batches: int | None = None) -> None:
        if batch_size % world_size:
            raise ConfigError(f"optim.batch_size {batch_size} is not divisible by the {world_size} processes")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last or world_size > 1
        self.epoch = 0
        self.max_batches = max_batches  # an epoch ends after this many batches (None: all)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full = self.length // self.batch_size
        n = full if self.drop_last or self.length % self.batch_size == 0 else full + 1
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=g).tolist()
        local = self.batch_size // self.world_size
        for b in range(len(self)):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.world_size == 1:
                yield batch
            else:
                yield batch[self.rank * local:(self.rank + 1) * local]


def train_loader(dataset: HOIDataset, cfg: HOITrainConfig, rank: int, world_size: int, pin: bool) -> DataLoader:
    sampler = GlobalBatchSampler(len(dataset), cfg.optim.batch_size, cfg.seed, rank, world_size,
                                 max_batches=cfg.optim.iters_per_epoch)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.data.workers,
                      pin_memory=pin, persistent_workers=False)


def inference_loader(dataset: HOIDataset, batch_size: int, workers: int, rank: int, world_size: int,
                     pin: bool) -> DataLoader:
    """This process's shard of ``dataset`` in order, no padding (see ShardedSampler)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardedSampler(len(dataset), rank, world_size),
                      collate_fn=collate, num_workers=workers, pin_memory=pin)


def build_train_val(cfg: HOITrainConfig, files: SplitFiles, output_dir: Path, write: bool) -> tuple[HOIDataset, HOIDataset | None, np.ndarray]:
    """The training dataset (images with at least one pair), the validation dataset (or None
    when val_fraction is 0) and the validation image indices."""
    train_idx, val_idx = validation_split(cfg, files.anno, output_dir, write)
    known = np.array([size_known(s) for s in files.anno["size"]], dtype=bool)
    if (~known).any():  # boxes cannot be normalised without the image size (hoi.data.hake)
        log.info("%d images have no size in %s (no pair, no --images at convert); they are left out",
                 int((~known).sum()), files.anno_path)
        train_idx, val_idx = train_idx[known[train_idx]], val_idx[known[val_idx]]
    full = HOIDataset(files.anno, files.detections, files.features, train_idx, cfg.pairs,
                      with_labels=True, add_gt_boxes=cfg.pairs.add_gt_boxes)
    has_pairs = np.array([full.pairs_of(k).num_pairs > 0 for k in range(len(full))], dtype=bool)
    if (~has_pairs).any():
        log.info("%d of %d training images have no human-object pair among their detections; they "
                 "give no training signal and are left out", int((~has_pairs).sum()), len(full))
    train = HOIDataset(files.anno, files.detections, files.features, train_idx[has_pairs], cfg.pairs,
                       with_labels=True, add_gt_boxes=cfg.pairs.add_gt_boxes)
    val = None
    if len(val_idx):
        val = HOIDataset(files.anno, files.detections, files.features, val_idx, cfg.pairs, with_labels=False)
    return train, val, val_idx
