"""The config of a VSGNet run on HICO-DET (Table XI): data files, pair building, the model,
optimisation, inference and run control.

Defaults are the SAC paper's recipe (Sec. IV-C): SGD, momentum 0.9, weight decay 1e-4, batch
16, 50 epochs, lr 0.001 raised tenfold for every layer but the spatial-attention branch in
epochs 10-28. The official VSGNet code's schedule is the same keys with other values (see
configs/hico/base.yaml): its README trains HICO-DET with lr 0.001 (``-l 0.001``; 0.01 is only
the argparse default), batch 8, 80 epochs, lr x0.1 in epochs 10-27, spatial branch at 0.001.
Pair building and RoI pooling default to the official code's behaviour (``pairs.label_rule``,
``pairs.exclude_self_pairs``, ``model.roi_pool``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from hoi.config import ConfigError, build_config
from hoi.inputs.pairs import LABEL_RULES, PairConfig
from hoi.models.backbones import ARCHS
from hoi.models.heads.roi import ROI_POOLS
from hoi.models.heads.vsgnet import VSGNetConfig

LOSS_NORMALIZERS = ("images", "pairs")
SELECT_METRICS = ("full", "rare", "non_rare", "present")


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
    allow_mismatch: bool = False  # use caches made from another annotation / backbone anyway (recorded)



@dataclass
class OptimConfig:
    epochs: int = 50  # 0: save the untrained model (best.pth) as a baseline and stop
    batch_size: int = 16  # images, total over all processes
    lr: float = 0.001  # every parameter but the spatial-attention branch
    spatial_lr: float = 0.001  # the spatial-attention branch (never multiplied)
    lr_factor: float = 10.0  # lr x lr_factor in epochs lr_factor_epochs
    lr_factor_epochs: list[int] = field(default_factory=lambda: [10, 28])  # first, last (1-based, inclusive)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    loss_normalizer: str = "images"  # summed BCE / (images x verbs) as the official code, or / (pairs x verbs)
    clip_grad_norm: float | None = None
    iters_per_epoch: int | None = None  # cap on the iterations of an epoch (None: the whole set); rehearsals


@dataclass
class InferenceConfig:
    batch_size: int = 16  # images per process
    min_score: float = 0.0  # rows with a lower score are not written
    max_per_image: int | None = None  # keep the top rows of each image (None: all)


@dataclass
class HOITrainConfig:
    arch: str = "sac_resnet50"  # the backbone that made the features (hoi.models.backbones.ARCHS)
    data: DataConfig = field(default_factory=DataConfig)
    pairs: PairConfig = field(default_factory=PairConfig)
    model: VSGNetConfig = field(default_factory=VSGNetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    test: InferenceConfig = field(default_factory=InferenceConfig)
    output_dir: str = "runs/hico/default"
    device: str = "auto"  # auto | cuda | cpu
    amp: bool = True  # autocast + GradScaler, only ever on GPU
    seed: int = 0  # each process seeds with seed + rank
    eval_every: int = 1  # epochs between validations (the last epoch always)
    select_metric: str = "full"  # validation mAP (Default setting) that picks best.pth
    log_every: int = 20  # iterations between loss records
    progress: bool = True
    tensorboard: bool = True
    stop_after_epoch: int | None = None  # end this invocation after this many epochs
    dist_timeout_s: float = 1800.0


def data_path(data: DataConfig, kind: str, split: str, arch: str) -> Path:
    """The file of ``kind`` (annotations, detections, features) of ``split``."""
    return Path(getattr(data, kind).format(root=data.root, split=split, arch=arch))


def validate(cfg: HOITrainConfig) -> None:
    """Raise ConfigError naming the key whose value is not allowed."""
    if cfg.arch not in ARCHS:
        raise ConfigError(f"arch: unknown backbone {cfg.arch!r}; valid names: {', '.join(sorted(ARCHS))}")
    if cfg.optim.loss_normalizer not in LOSS_NORMALIZERS:
        raise ConfigError(f"optim.loss_normalizer must be one of {LOSS_NORMALIZERS}, got {cfg.optim.loss_normalizer!r}")
    if cfg.pairs.label_rule not in LABEL_RULES:
        raise ConfigError(f"pairs.label_rule must be one of {LABEL_RULES}, got {cfg.pairs.label_rule!r}")
    if cfg.model.roi_pool not in ROI_POOLS:
        raise ConfigError(f"model.roi_pool must be one of {ROI_POOLS}, got {cfg.model.roi_pool!r}")
    if cfg.select_metric not in SELECT_METRICS:
        raise ConfigError(f"select_metric must be one of {SELECT_METRICS}, got {cfg.select_metric!r}")
    if len(cfg.optim.lr_factor_epochs) != 2:
        raise ConfigError(f"optim.lr_factor_epochs must be [first, last], got {list(cfg.optim.lr_factor_epochs)}")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    if cfg.optim.batch_size < 1 or cfg.optim.epochs < 0:
        raise ConfigError("optim.batch_size must be positive and optim.epochs not negative")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> HOITrainConfig:
    """The validated run config: schema defaults, the YAML file (with ``_base_``), overrides."""
    cfg = build_config(HOITrainConfig, path, overrides)
    validate(cfg)
    return cfg


def lr_multiplier(cfg: OptimConfig, epoch: int) -> float:
    """The factor on ``lr`` in (0-based) ``epoch``: ``lr_factor`` in the 1-based, inclusive
    range ``lr_factor_epochs``, else 1. The spatial branch always trains at ``spatial_lr``."""
    first, last = cfg.lr_factor_epochs
    return cfg.lr_factor if first <= epoch + 1 <= last else 1.0
