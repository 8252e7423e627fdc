"""The ImageNet train/val datasets and their loaders for one process of a (distributed) run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import DataLoader, DistributedSampler

from hoi.config import ConfigError
from hoi.engine.distributed import DistInfo, ShardedSampler
from hoi.pretrain.imagefolder import (
    DatasetError,
    EpochTaggedSampler,
    ImageFolderDataset,
    check_same_classes,
    collate_skipping,
    eval_transform,
    train_augment,
)
from hoi.pretrain.pretrain_config import PretrainConfig, per_process_batch


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    train_sampler: EpochTaggedSampler
    classes: list[str]


def build_datasets(cfg: PretrainConfig,
                   encoded: bool = False) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The training and validation image folders, with the same classes (DatasetError if not).
    With ``encoded`` the training set hands over JPEG bytes, decoded on the device."""
    d = cfg.data
    root = Path(d.root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder not found: {root} (data.root); expected "
            f"{root}/{d.train_dir}/<class>/*.JPEG "
            f"and {root}/{d.val_dir}/<class>/*.JPEG (see docs/pretraining.md)"
        )
    train = ImageFolderDataset(
        root / d.train_dir,
        augment=train_augment(d.train_crop, d.crop_scale, d.crop_ratio, d.hflip, cfg.seed),
        encoded=encoded,
        on_bad_image=d.on_bad_image,
        extensions=d.extensions,
    )
    val = ImageFolderDataset(
        root / d.val_dir,
        eval_transform(d.eval_resize, d.eval_crop),
        on_bad_image=d.on_bad_image,
        extensions=d.extensions,
    )
    check_same_classes(train.root, train.classes, val.root, val.classes)
    return train, val


def build_loaders(cfg: PretrainConfig, train: ImageFolderDataset, val: ImageFolderDataset,
                  dist: DistInfo) -> Loaders:
    """Loaders for this process: the training set shuffled by a DistributedSampler (call
    ``train_sampler.set_epoch``), the validation set sharded without padding. Batches are
    pinned on CUDA; workers persist across epochs (the augmentation does not depend on their
    state, :mod:`hoi.pretrain.augment`)."""
    batch = per_process_batch(cfg.optim.batch_size, dist.world_size)
    eval_batch = per_process_batch(cfg.optim.eval_batch_size, dist.world_size,
                                   "optim.eval_batch_size")
    # shuffle order depends only on (seed, epoch): the same on every rank and after a resume
    sampler = EpochTaggedSampler(DistributedSampler(
        train, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=cfg.seed,
        drop_last=False
    ))
    if len(sampler) < batch:
        raise ConfigError(
            f"{train.root}: {len(train)} training images give {len(sampler)} per process, fewer "
            "than one "
            f"batch of {batch} (optim.batch_size={cfg.optim.batch_size} over {dist.world_size} "
            "processes)"
        )
    workers = cfg.data.workers
    common = dict(
        num_workers=workers,
        pin_memory=dist.device.type == "cuda",
        collate_fn=collate_skipping,
        persistent_workers=cfg.data.persistent_workers and workers > 0,
        prefetch_factor=cfg.data.prefetch_factor if workers > 0 else None,
    )
    train_loader = DataLoader(train, batch_size=batch, sampler=sampler, drop_last=True, **common)
    val_loader = DataLoader(
        val, batch_size=eval_batch, sampler=ShardedSampler(len(val), dist.rank, dist.world_size),
        **common
    )
    return Loaders(train_loader, val_loader, sampler, train.classes)
