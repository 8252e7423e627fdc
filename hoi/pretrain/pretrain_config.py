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
from typing import ClassVar

from hoi.config import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Check,
    ConfigError,
    build_config,
    one_of,
)
from hoi.engine.distributed import DDPConfig
from hoi.engine.precision import AMP_DTYPES
from hoi.models.backbones import ARCHS, BackboneConfig, validate_backbone_config
from hoi.pretrain.device_input import DECODE_MODES, MEMORY_FORMATS
from hoi.pretrain.imagefolder import BAD_IMAGE_POLICIES, IMAGE_EXTENSIONS


@dataclass
class DataConfig:
    RANGES: ClassVar[dict[str, Check]] = {
        "train_crop": AT_LEAST_ONE,
        "crop_scale": Check(gt=0, le=1, size=2, why="[min, max] fraction of the image area"),
        "crop_ratio": Check(gt=0, size=2, why="[min, max] aspect ratio"),
        "hflip": Check(ge=0, le=1, why="a probability"),
        "eval_resize": AT_LEAST_ONE, "eval_crop": AT_LEAST_ONE,
        "mean": Check(size=3, why="per RGB channel"),
        "std": Check(gt=0, size=3, why="per RGB channel"),
        "workers": NON_NEGATIVE, "prefetch_factor": AT_LEAST_ONE,
        "decode": one_of(*DECODE_MODES), "on_bad_image": one_of(*BAD_IMAGE_POLICIES),
    }

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
    persistent_workers: bool = True  # kept across epochs (augmentation is per-sample seeded)
    prefetch_factor: int = 4  # batches each worker prepares ahead
    # where training JPEGs are decoded: auto (on the GPU when training on one) | cpu | device
    decode: str = "auto"
    extensions: list[str] = field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    on_bad_image: str = "stop"  # stop: fail naming the file | skip: leave it out and count it


@dataclass
class OptimConfig:
    RANGES: ClassVar[dict[str, Check]] = {
        "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "eval_batch_size": AT_LEAST_ONE,
        "lr": POSITIVE, "momentum": Check(ge=0, lt=1), "weight_decay": NON_NEGATIVE,
        "lr_step_epochs": AT_LEAST_ONE, "lr_gamma": Check(gt=0, le=1),
        "warmup_epochs": NON_NEGATIVE, "warmup_start_factor": FRACTION,
        "attention_lr_mult": Check(ge=0, why="0 freezes the attention blocks"),
        "label_smoothing": Check(ge=0, lt=1),
        "clip_grad_norm": Check(gt=0, why="null: no clipping"),
    }

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
    RANGES: ClassVar[dict[str, Check]] = {
        "device": one_of("auto", "cuda", "cpu"), "bn_momentum": Check(gt=0, le=1),
        "seed": SEED, "eval_every": AT_LEAST_ONE, "log_every": AT_LEAST_ONE,
        "stop_after_epoch": Check(ge=1, why="null: run every epoch"),
        "dist_timeout_s": POSITIVE, "amp_dtype": one_of(*AMP_DTYPES),
        "memory_format": one_of(*MEMORY_FORMATS),
    }

    arch: str | None = None  # a preset name (resnet50, sac_resnet50, gc_resnet101, ...)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    init_weights: str | None = None  # None (random) | torchvision | path to weights
    init_ignore_classifier: bool = False  # do not load fc.* (another number of classes)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: str = "runs/imagenet/default"
    device: str = "auto"  # auto | cuda | cpu
    amp: bool = True  # mixed precision, only ever on GPU (hoi.engine.precision)
    amp_dtype: str = "auto"  # auto (bf16 where the GPU has it, else fp16 + scaler) | bf16 | fp16
    memory_format: str = "auto"  # auto (channels_last on CUDA) | channels_last | contiguous
    ddp: DDPConfig = field(default_factory=DDPConfig)  # options of DistributedDataParallel
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
                           base={"backbone": copy.deepcopy(ARCHS[cfg.arch])},
                           base_origin=f"arch={cfg.arch} preset")
    validate_pretrain_config(cfg)
    return cfg


def validate_pretrain_config(cfg: PretrainConfig) -> None:
    """Raise ConfigError naming the field whose value is not allowed. Single keys are checked
    where they are declared (the ``RANGES`` of each dataclass, by ``build_config``); what is
    left here relates keys to one another."""
    validate_backbone_config(cfg.backbone)
    for key in ("crop_scale", "crop_ratio"):
        low, high = getattr(cfg.data, key)
        if low > high:
            raise ConfigError(f"data.{key}=[{low}, {high}]: expected [min, max] with min <= max")
    if cfg.optim.nesterov and cfg.optim.momentum == 0:
        raise ConfigError("optim.nesterov=true with optim.momentum=0: expected a momentum > 0 "
                          "(Nesterov momentum needs one)")
    if cfg.data.eval_crop > cfg.data.eval_resize:
        raise ConfigError(
            f"data.eval_crop ({cfg.data.eval_crop}) must not exceed data.eval_resize "
            f"({cfg.data.eval_resize})"
        )


def per_process_batch(total: int, world_size: int, key: str = "optim.batch_size") -> int:
    """The per-process share of a total batch; it must divide evenly."""
    if total % world_size:
        raise ConfigError(f"{key}={total} is the total over {world_size} processes and must be "
                          "divisible by it")
    return total // world_size
