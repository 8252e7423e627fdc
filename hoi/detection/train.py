"""Training and COCO evaluation of the detectors, in the style of Detectron2's
``tools/train_net.py``: Detectron2's ``DefaultTrainer`` (its data loaders, LR schedule,
checkpoints every ``SOLVER.CHECKPOINT_PERIOD`` and exact resume from ``OUTPUT_DIR/last_checkpoint``,
``metrics.json`` and TensorBoard event files in ``OUTPUT_DIR``), COCO evaluation by pycocotools
(``COCOEvaluator``; the C++ COCOeval of a compiled Detectron2 is not needed) and, on several
processes, DDP under ``torchrun`` or Detectron2's own launcher.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hoi.detectron2_compat import import_detectron2
from hoi.errors import UserError

import_detectron2()  # the import fixes, before any detectron2 submodule
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.engine import DefaultTrainer  # noqa: E402
from detectron2.evaluation import COCOEvaluator  # noqa: E402
from detectron2.utils import comm  # noqa: E402

import hoi.detection.backbone  # noqa: E402, F401 - registers the attention backbones

LOG = logging.getLogger(__name__)


class DatasetFileError(UserError, FileNotFoundError):
    """A COCO annotation file or image folder that is not there."""


@dataclass(frozen=True)
class CocoSplit:
    """A COCO-format split: its instances JSON and its image folder."""

    name: str
    json_file: str
    image_root: str


def register_split(split: CocoSplit) -> str:
    """Register ``split`` in Detectron2's catalogues (idempotent for the same files)."""
    for path, what in ((split.json_file, "annotation file"), (split.image_root, "image folder")):
        if not Path(path).exists():
            raise DatasetFileError(f"{path}: {what} of dataset {split.name!r} not found")
    if split.name in DatasetCatalog.list():
        meta = MetadataCatalog.get(split.name)
        if getattr(meta, "json_file", None) == split.json_file:
            return split.name
        raise DatasetFileError(f"dataset name {split.name!r} is already registered with "
                               f"{getattr(meta, 'json_file', '?')}; choose another name")
    register_coco_instances(split.name, {}, split.json_file, split.image_root)
    return split.name


def clip_total_norm(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.optim.Optimizer:
    """Make ``optimizer.step`` first clip the L2 norm of all gradients together to ``max_norm``
    (mmdetection's ``grad_clip``; Detectron2 v0.6 clips per parameter only). The instance gets a
    subclass of its class, as Detectron2's ``maybe_add_gradient_clipping`` makes one, so that
    ``step`` stays a method (torch's LR schedulers wrap it)."""
    base = type(optimizer)

    def step(self: torch.optim.Optimizer, closure: Any = None) -> Any:
        params = [p for group in self.param_groups for p in group["params"]
                  if p.grad is not None]
        nn.utils.clip_grad_norm_(params, max_norm)
        return base.step(self, closure)

    optimizer.__class__ = type(f"{base.__name__}WithTotalNormClip", (base,), {"step": step})
    return optimizer


class DetectorTrainer(DefaultTrainer):
    """Detectron2's trainer with pycocotools' COCO evaluation and total-norm gradient clipping."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: str | None = None):
        folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, output_dir=folder, use_fast_impl=False)

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        optimizer = super().build_optimizer(cfg, model)
        if cfg.SOLVER.CLIP_TOTAL_NORM > 0:
            clip_total_norm(optimizer, cfg.SOLVER.CLIP_TOTAL_NORM)
        return optimizer


def init_torchrun() -> None:
    """Under ``torchrun`` with several processes: the process group (NCCL on GPUs, gloo on CPUs)
    and Detectron2's per-machine group, as ``detectron2.engine.launch._distributed_worker`` sets
    them up for the processes it spawns itself."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    machine = dist.get_rank() // local_world
    for i in range(world // local_world):
        group = dist.new_group(list(range(i * local_world, (i + 1) * local_world)))
        if i == machine:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()


def setup_run(cfg) -> None:
    """What Detectron2's ``default_setup`` does, without its environment report (which needs the
    compiled ops): the output folder, logging to ``OUTPUT_DIR/log.txt``, the full config in
    ``OUTPUT_DIR/config.yaml`` (reusable as ``--config``) and the seed."""
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    out = Path(cfg.OUTPUT_DIR)
    rank = comm.get_rank()
    if comm.is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    comm.synchronize()
    setup_logger(str(out), distributed_rank=rank, name="fvcore")
    setup_logger(str(out), distributed_rank=rank, name="hoi")
    logger = setup_logger(str(out), distributed_rank=rank)
    logger.info("world size %d, rank %d; config:\n%s", comm.get_world_size(), rank, cfg.dump())
    if comm.is_main_process():
        (out / "config.yaml").write_text(cfg.dump())
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)


def evaluate(cfg) -> dict[str, Any]:
    """COCO evaluation of the weights ``cfg.MODEL.WEIGHTS`` on ``cfg.DATASETS.TEST``."""
    model = DetectorTrainer.build_model(cfg)
    DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS,
                                                                        resume=False)
    return DetectorTrainer.test(cfg, model)


def train(cfg, resume: bool) -> tuple[DetectorTrainer, dict[str, Any]]:
    """Train (resuming from ``OUTPUT_DIR/last_checkpoint`` if ``resume``); returns the trainer
    (its ``storage`` holds the loss history) and the final evaluation results."""
    trainer = DetectorTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()  # returns the results only when TEST.EXPECTED_RESULTS is set
    return trainer, dict(getattr(trainer, "_last_eval_results", None) or {})


def loss_history(trainer: DetectorTrainer, key: str = "total_loss") -> list[float]:
    """The per-iteration values of ``key`` that the trainer logged."""
    return [float(v) for v, _ in trainer.storage.history(key).values()]


def flatten_results(results: dict[str, Any]) -> Iterable[tuple[str, float]]:
    """``("bbox/AP", 37.3)``-style pairs of Detectron2's nested evaluation results."""
    for task, metrics in results.items():
        for name, value in metrics.items():
            yield f"{task}/{name}", float(value)
