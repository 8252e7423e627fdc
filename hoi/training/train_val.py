"""The seeded validation split carved from the training images (model selection never looks at
the test set), and the training and validation datasets of a run."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hoi.config import ConfigError
from hoi.data.annotations import size_known
from hoi.engine.logging import LOGGER_NAME
from hoi.evaluation.map_scores import empty_split_reason
from hoi.hoi_config import HOITrainConfig
from hoi.inputs.dataset import HOIDataset, SplitFiles

VAL_SPLIT_NAME = "val_split.json"
log = logging.getLogger(LOGGER_NAME)


def carve_validation(num_images: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted image indices: a seeded random ``fraction`` of the images held out."""
    rng = np.random.default_rng(seed)
    n_val = int(round(fraction * num_images))
    val = np.sort(rng.permutation(num_images)[:n_val])
    train = np.setdiff1d(np.arange(num_images), val)
    return train, val


def validation_split(cfg: HOITrainConfig, anno: Mapping[str, Any], output_dir: Path,
                     write: bool) -> tuple[np.ndarray, np.ndarray]:
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
                              f"(seed {saved['seed']}, fraction {saved['fraction']}); use another "
                              "output_dir")
    elif write:
        path.write_text(json.dumps(record, indent=1))
    return train, val


def build_train_val(cfg: HOITrainConfig, files: SplitFiles, output_dir: Path,
                    write: bool) -> tuple[HOIDataset, HOIDataset | None, np.ndarray]:
    """The training dataset (images with at least one pair), the validation dataset (or None
    when val_fraction is 0) and the validation image indices."""
    train_idx, val_idx = validation_split(cfg, files.anno, output_dir, write)
    known = np.array([size_known(s) for s in files.anno["size"]], dtype=bool)
    if (~known).any():  # boxes cannot be normalised without the image size (hoi.data.hake)
        log.info("%d images have no size in %s (no pair, no --images at convert); "
                 "they are left out",
                 int((~known).sum()), files.anno_path)
        train_idx, val_idx = train_idx[known[train_idx]], val_idx[known[val_idx]]
    full = HOIDataset(files.anno, files.detections, files.features, train_idx, cfg.pairs,
                      with_labels=True, add_gt_boxes=cfg.pairs.add_gt_boxes)
    has_pairs = np.array([full.pairs_of(k).num_pairs > 0 for k in range(len(full))], dtype=bool)
    if (~has_pairs).any():
        log.info("%d of %d training images have no human-object pair among their detections; they "
                 "give no training signal and are left out", int((~has_pairs).sum()), len(full))
    train = HOIDataset(files.anno, files.detections, files.features, train_idx[has_pairs],
                       cfg.pairs,
                       with_labels=True, add_gt_boxes=cfg.pairs.add_gt_boxes)
    val = None
    if len(val_idx):
        check_validation_splits(cfg, files)
        val = HOIDataset(files.anno, files.detections, files.features, val_idx, cfg.pairs,
                         with_labels=False)
    return train, val, val_idx


def check_validation_splits(cfg: HOITrainConfig, files: SplitFiles) -> None:
    """Say once, before training, why a validation mAP will be nan in every epoch (a split of
    the official mean without a class in this annotation), and refuse ``select_metric`` on it:
    best.pth could not be chosen."""
    for split in ("rare", "non_rare"):
        if len(files.anno[split]):
            continue
        why = empty_split_reason(split)
        if cfg.select_metric == split:
            raise ConfigError(f"select_metric={split}: val/map_{split} is nan in every validation "
                              f"of {files.anno_path}: {why}; expected select_metric=full or "
                              "present")
        log.warning("val/map_%s will be nan in every validation: %s (%s)", split, why,
                    files.anno_path)
