"""The config of an HOI run on HICO-DET (Table XI): data files, pair building, the interaction
head (``model.*``, its keys depend on ``model.name``), optimisation, inference and run control.
``hoi train`` writes it; ``hoi test`` and ``hoi predict`` read it back from the checkpoint.

Defaults are the SAC paper's recipe (Sec. IV-C): SGD, momentum 0.9, weight decay 1e-4, batch
16, 50 epochs, lr 0.001 raised tenfold for every layer but the spatial-attention branch in
epochs 10-28. The official VSGNet code's schedule is the same keys with other values (see
configs/hico/base.yaml): its README trains HICO-DET with lr 0.001 (``-l 0.001``; 0.01 is only
the argparse default), batch 8, 80 epochs, lr x0.1 in epochs 10-27, spatial branch at 0.001.
Pair building, RoI pooling, the two-box map and the pair geometry default to the official
code's behaviour (``pairs.label_rule``, ``pairs.exclude_self_pairs``, ``model.roi_pool``,
``model.interaction_map``, ``model.pair_geometry``); README's deviation table lists the rest.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hoi.config import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Check,
    ConfigError,
    build_config,
    one_of,
    peek,
)
from hoi.engine.checkpoint import CheckpointError
from hoi.engine.logging import LOGGER_NAME
from hoi.engine.precision import AMP_DTYPES
from hoi.inference.scoring import InferenceConfig
from hoi.inputs.dataset import SplitFiles
from hoi.inputs.pairs import CAP_ORDERS, LABEL_RULES, PairConfig
from hoi.inputs.split_files import DataConfig, open_split
from hoi.models.backbones import ARCHS
from hoi.models.heads import HEADS, HeadConfig
from hoi.registry import Table

DEFAULT_HEAD = "vsgnet"
log = logging.getLogger(LOGGER_NAME)

# optim.loss_normalizer: the count (per process) that the summed loss is divided by, x verbs
LOSS_NORMALIZERS = Table("optim.loss_normalizer", {
    "images": lambda batch: batch["features"].shape[0],  # the official code's
    "pairs": lambda batch: batch["pair_h"].shape[0],
})
# select_metric: the validation metric that picks best.pth
SELECT_METRICS = Table("select_metric", {
    "full": "val/map_full", "rare": "val/map_rare", "non_rare": "val/map_non_rare",
    "present": "val/map_present",
})


@dataclass
class OptimConfig:
    RANGES: ClassVar[dict[str, Check]] = {
        "epochs": NON_NEGATIVE, "batch_size": AT_LEAST_ONE, "lr": POSITIVE,
        "lr_factor": POSITIVE,
        "lr_factor_epochs": Check(ge=0, size=2, why="[first, last] epoch, 1-based, inclusive"),
        "momentum": Check(ge=0, lt=1), "weight_decay": NON_NEGATIVE,
        "clip_grad_norm": Check(gt=0, why="null: no clipping"),
        "iters_per_epoch": Check(ge=1, why="null: the whole set"),
    }

    epochs: int = 50  # 0: save the untrained model (best.pth) as a baseline and stop
    batch_size: int = 16  # images, total over all processes
    lr: float = 0.001  # every parameter group the head marks as scheduled
    lr_factor: float = 10.0  # lr x lr_factor in epochs lr_factor_epochs
    # lr x lr_factor from the first to the last epoch (1-based, inclusive)
    lr_factor_epochs: list[int] = field(default_factory=lambda: [10, 28])
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # summed loss / (images x verbs) as the official code, or / (pairs x verbs)
    loss_normalizer: str = "images"
    clip_grad_norm: float | None = None
    # cap on the iterations of an epoch (None: the whole set); rehearsals
    iters_per_epoch: int | None = None


@dataclass
class HOITrainConfig:
    RANGES: ClassVar[dict[str, Check]] = {
        "device": one_of("auto", "cuda", "cpu"), "seed": SEED, "eval_every": AT_LEAST_ONE,
        "log_every": AT_LEAST_ONE, "stop_after_epoch": Check(ge=1, why="null: run every epoch"),
        "dist_timeout_s": POSITIVE,
    }

    arch: str = "sac_resnet50"  # the backbone that made the features (hoi.models.backbones.ARCHS)
    data: DataConfig = field(default_factory=DataConfig)
    pairs: PairConfig = field(default_factory=PairConfig)
    model: HeadConfig = field(default_factory=HeadConfig)  # the head's own Config (run_schema)
    optim: OptimConfig = field(default_factory=OptimConfig)
    test: InferenceConfig = field(default_factory=InferenceConfig)
    output_dir: str = "runs/hico/default"
    device: str = "auto"  # auto | cuda | cpu
    amp: bool = True  # mixed precision, only ever on GPU (hoi.engine.precision)
    amp_dtype: str = "auto"  # auto (bf16 where the GPU has it, else fp16 + scaler) | bf16 | fp16
    seed: int = 0  # each process seeds with seed + rank
    eval_every: int = 1  # epochs between validations (the last epoch always)
    select_metric: str = "full"  # validation mAP (Default setting) that picks best.pth
    log_every: int = 20  # iterations between loss records
    progress: bool = True
    tensorboard: bool = True
    stop_after_epoch: int | None = None  # end this invocation after this many epochs
    dist_timeout_s: float = 1800.0


def run_schema(head: str) -> type[HOITrainConfig]:
    """:class:`HOITrainConfig` whose ``model`` is the ``Config`` of head ``head``, so that the
    head's keys are typed and checked like every other key."""
    return _schema_with(HEADS[head].Config)


@functools.cache
def _schema_with(head_config: type[HeadConfig]) -> type[HOITrainConfig]:
    return dataclasses.make_dataclass(f"HOITrainConfig_{head_config.__name__}",
                                      [("model", head_config, field(default_factory=head_config))],
                                      bases=(HOITrainConfig,))


def validate(cfg: HOITrainConfig) -> None:
    """Raise ConfigError naming the key whose value is not allowed."""
    if cfg.arch not in ARCHS:
        raise ConfigError(f"arch: unknown backbone {cfg.arch!r}; valid names: "
                          f"{', '.join(sorted(ARCHS))}")
    for table, value in ((LOSS_NORMALIZERS, cfg.optim.loss_normalizer),
                         (LABEL_RULES, cfg.pairs.label_rule),
                         (CAP_ORDERS, cfg.pairs.cap_order),
                         (SELECT_METRICS, cfg.select_metric), (HEADS, cfg.model.name),
                         (AMP_DTYPES, cfg.amp_dtype)):
        table.check(value)
    HEADS[cfg.model.name].validate(cfg.model)
    # single keys are checked where they are declared (the RANGES of each dataclass, by
    # build_config); what is left here relates keys to one another
    first, last = cfg.optim.lr_factor_epochs
    if first > last:
        raise ConfigError(f"optim.lr_factor_epochs=[{first}, {last}]: expected [first, last] "
                          "with first <= last (optim.lr_factor=1.0 leaves the rate unchanged)")


# VSGNet keys added after runs were saved, with the value that reads such a run as it was made
PRE_DEFAULTS = {"interaction_map": "pixel", "pair_geometry": "pixel"}


def upgrade_run_config(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A run config saved by an older version, in today's keys, meaning what it meant then:
    ``optim.spatial_lr`` (a VSGNet setting) is now ``model.spatial_lr``; a VSGNet run saved
    before ``model.interaction_map`` / ``model.pair_geometry`` existed used the pixel versions
    (:data:`PRE_DEFAULTS`), not today's official defaults."""
    cfg = copy.deepcopy(dict(saved))
    optim, model = dict(cfg.get("optim") or {}), dict(cfg.get("model") or {})
    if "spatial_lr" in optim:
        model.setdefault("spatial_lr", optim.pop("spatial_lr"))
    if model and model.get("name", DEFAULT_HEAD) == "vsgnet" and "spatial_size" in model:
        for key, value in PRE_DEFAULTS.items():
            model.setdefault(key, value)
    for key, section in (("optim", optim), ("model", model)):
        if key in cfg or section:
            cfg[key] = section
    return cfg


def pre_default_keys(saved: Mapping[str, Any]) -> list[str]:
    """The ``model.*`` keys that :func:`upgrade_run_config` fills in with :data:`PRE_DEFAULTS`."""
    before = dict(saved.get("model") or {})
    after = upgrade_run_config(saved)["model"] if before else {}
    return [f"model.{k}={after[k]}" for k in PRE_DEFAULTS if k in after and k not in before]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                base: Mapping[str, Any] | None = None,
                base_origin: str = "saved config") -> HOITrainConfig:
    """The validated run config: schema defaults, ``base`` (a saved config, named
    ``base_origin`` in errors), the YAML file (with ``_base_``), overrides. ``model.name`` picks
    the head and so the schema of ``model.*``. Every key's type and declared range is checked
    (:func:`hoi.config.build_config`), then the relations between keys (:func:`validate`)."""
    base = upgrade_run_config(base) if base is not None else None
    head = peek("model.name", DEFAULT_HEAD, path, overrides, base)
    cfg = build_config(run_schema(str(head)), path, overrides, base=base,
                       base_origin=base_origin)
    validate(cfg)
    return cfg


def config_of_checkpoint(ckpt: Mapping[str, Any], source: str | Path,
                         overrides: Sequence[str] = ()) -> HOITrainConfig:
    """The run config saved in a ``hoi train`` checkpoint, with ``overrides`` on top."""
    if "config" not in ckpt or "arch" not in ckpt:
        raise CheckpointError(f"{source}: not a hoi train checkpoint (no config/arch entries)")
    filled = pre_default_keys(ckpt["config"])
    if filled:
        log.warning("%s was saved before these keys existed; read as it was trained: %s", source,
                    " ".join(filled))
    return load_config(None, overrides, base=ckpt["config"],
                       base_origin=f"{source} (its saved config)")


def model_arch(cfg: HOITrainConfig) -> dict[str, Any]:
    """What a checkpoint's weights fit: the head, its architecture keys and the features'
    backbone."""
    return {"model": cfg.model.name, "backbone": cfg.arch,
            "heads": HEADS[cfg.model.name].arch_record(cfg.model)}


def lr_multiplier(cfg: OptimConfig, epoch: int) -> float:
    """The factor on ``lr`` in (0-based) ``epoch``: ``lr_factor`` in the 1-based, inclusive
    range ``lr_factor_epochs``, else 1. Groups the head marks as not scheduled keep their rate."""
    first, last = cfg.lr_factor_epochs
    return cfg.lr_factor if first <= epoch + 1 <= last else 1.0


def open_run_split(cfg: HOITrainConfig, split: str, annotations: str | Path | None = None,
                   detections: str | Path | None = None, features: str | Path | None = None,
                   allow_flag: str = "--allow-mismatch (data.allow_mismatch=true)") -> SplitFiles:
    """The files of ``split`` for this run (:func:`hoi.inputs.split_files.open_split` with the
    run's data templates, backbone and head input channels); a refusal names ``allow_flag``, the
    way past it of the calling command."""
    return open_split(cfg.data, cfg.arch, cfg.model.in_channels, split, annotations, detections,
                      features,
                      allow_flag)
