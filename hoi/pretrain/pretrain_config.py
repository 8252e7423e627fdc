"""The pretraining config: data, optimisation, run control, and the backbone it trains.

Defaults are the SAC paper's ImageNet recipe (Sec. IV-B): 100 epochs, total batch 256, SGD
with momentum 0.9, lr 0.1 divided by 10 every 30 epochs after 5 epochs of linear warm-up,
weight decay 1e-4, RandomResizedCrop 224 + flip for training, resize 256 / centre crop 224
for evaluation.

The backbone is named by ``arch`` (a preset of ``hoi.models.backbones.ARCHS``) and/or given as
a ``backbone`` block; the block's keys override the preset's. ``backbone.num_classes`` is set
from the dataset's class folders.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hoi.config import ConfigError, build_config
from hoi.models.backbones import ARCHS, BackboneConfig, validate_backbone_config
from hoi.pretrain.imagefolder import BAD_IMAGE_POLICIES, IMAGE_EXTENSIONS


@dataclass
class DataConfig:
    root: str = "data/imagenet"  # holds train_dir/ and val_dir/, one sub-folder per class
    train_dir: str = "train"
    val_dir: str = "val"
    train_crop: int = 224
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: float = 0.5  # probability of a horizontal flip
    eval_resize: int = 256  # shorter side before the centre crop
    eval_crop: int = 224
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    workers: int = 8  # DataLoader worker processes per training process
    extensions: list[str] = field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    on_bad_image: str = "stop"  # stop: fail naming the file | skip: leave it out and count it


@dataclass
class OptimConfig:
    epochs: int = 100
    batch_size: int = 256  # total over all processes; each gets batch_size / world_size
    eval_batch_size: int = 256  # total over all processes
    lr: float = 0.1  # for batch_size; not rescaled automatically
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    lr_step_epochs: int = 30  # lr *= lr_gamma every lr_step_epochs epochs
    lr_gamma: float = 0.1
    warmup_epochs: float = 5.0  # linear, per iteration, from warmup_start_factor * lr to lr
    warmup_start_factor: float = 0.0
    attention_lr_mult: float = 1.0  # lr multiplier for the attention blocks' parameters
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None  # None: no clipping


@dataclass
class PretrainConfig:
    arch: str | None = None  # a preset name (resnet50, sac_resnet50, gc_resnet101, ...)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    init_weights: str | None = None  # None (random) | torchvision | path to weights
    init_ignore_classifier: bool = False  # do not load fc.* (another number of classes)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/imagenet/default"
    device: str = "auto"  # auto | cuda | cpu
    amp: bool = True  # autocast + GradScaler; only ever on GPU
    sync_bn: bool = False  # SyncBatchNorm across GPUs
    bn_momentum: float = 0.1  # of BatchNorm's running statistics (PyTorch's default)
    deterministic: bool = False  # cuDNN deterministic kernels (slower); CPU runs always are
    seed: int = 0  # each process seeds with seed + rank
    eval_every: int = 1  # epochs between validations (the last epoch is always evaluated)
    log_every: int = 50  # iterations between training-loss records
    progress: bool = True  # tqdm bar on the main process
    tensorboard: bool = True
    stop_after_epoch: int | None = None  # end this invocation once this many epochs are done
    dist_timeout_s: float = 1800.0


def load_pretrain_config(path: str | Path | None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Build and validate a PretrainConfig from a YAML file and ``key=value`` overrides.

    If ``arch`` is set, its preset is the base of the ``backbone`` block: keys given in the file
    or on the command line override it.
    """
    cfg = build_config(PretrainConfig, path, overrides)
    if cfg.arch is not None:
        if cfg.arch not in ARCHS:
            raise ConfigError(f"arch: unknown name {cfg.arch!r}; valid names: "
                              f"{', '.join(sorted(ARCHS))}")
        cfg = build_config(PretrainConfig, path, overrides,
                           base={"backbone": copy.deepcopy(ARCHS[cfg.arch])})
    validate_pretrain_config(cfg)
    return cfg


def validate_pretrain_config(cfg: PretrainConfig) -> None:
    """Raise ConfigError naming the field whose value is not allowed."""
    validate_backbone_config(cfg.backbone)
    if cfg.data.on_bad_image not in BAD_IMAGE_POLICIES:
        raise ConfigError(f"data.on_bad_image must be stop or skip, got {cfg.data.on_bad_image!r}")
    if cfg.device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"device must be auto, cuda or cpu, got {cfg.device!r}")
    positive = {
        "optim.epochs": cfg.optim.epochs,
        "optim.batch_size": cfg.optim.batch_size,
        "optim.eval_batch_size": cfg.optim.eval_batch_size,
        "optim.lr_step_epochs": cfg.optim.lr_step_epochs,
        "data.train_crop": cfg.data.train_crop,
        "data.eval_crop": cfg.data.eval_crop,
        "data.eval_resize": cfg.data.eval_resize,
        "eval_every": cfg.eval_every,
        "log_every": cfg.log_every,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if cfg.optim.warmup_epochs < 0 or not 0 <= cfg.optim.warmup_start_factor <= 1:
        raise ConfigError(
            "optim.warmup_epochs must be >= 0 and optim.warmup_start_factor in [0, 1]")
    if cfg.data.eval_crop > cfg.data.eval_resize:
        raise ConfigError(
            f"data.eval_crop ({cfg.data.eval_crop}) must not exceed data.eval_resize "
            f"({cfg.data.eval_resize})"
        )
    if not 0 < cfg.bn_momentum <= 1:
        raise ConfigError(f"bn_momentum must be in (0, 1], got {cfg.bn_momentum}")
    if cfg.stop_after_epoch is not None and cfg.stop_after_epoch <= 0:
        raise ConfigError(f"stop_after_epoch must be positive, got {cfg.stop_after_epoch}")


def per_process_batch(total: int, world_size: int, key: str = "optim.batch_size") -> int:
    """The per-process share of a total batch; it must divide evenly."""
    if total % world_size:
        raise ConfigError(f"{key}={total} is the total over {world_size} processes and must be "
                          "divisible by it")
    return total // world_size
