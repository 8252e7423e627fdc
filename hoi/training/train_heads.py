"""Training an interaction head on cached features (``hoi train``): one epoch of training,
validation mAP on the held-out part of train (never on test), best.pth by validation mAP, on the
shared engine (:mod:`hoi.engine.loop`: set-up, resume, a checkpoint every epoch, metrics).

The head is the one ``model.name`` picks (:data:`hoi.models.heads.HEADS`); this file only uses
its interface (forward, loss, log_scores, param_groups). Runs as one process or under
``torchrun`` (DDP; gloo on CPU). k processes with a total batch B compute what one process with
batch B computes: each rank takes its part of every global batch, BatchNorm statistics are
reduced over all ranks, and the loss normaliser is global.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hoi.data.annotations import pair_counts, subset_annotations
from hoi.engine.disk import require_free_space
from hoi.engine.distributed import DistInfo, all_gather_objects, all_reduce_sum
from hoi.engine.finite import FiniteWatch
from hoi.engine.logging import LOGGER_NAME, MetricsWriter
from hoi.engine.loop import Trainer
from hoi.engine.precision import autocast
from hoi.evaluation import evaluate
from hoi.hoi_config import (
    LOSS_NORMALIZERS,
    SELECT_METRICS,
    HOITrainConfig,
    OptimConfig,
    lr_multiplier,
    model_arch,
    open_run_split,
    upgrade_run_config,
)
from hoi.inference.scoring import concat_rows, predict
from hoi.inputs.dataset import HOIDataset, SplitFiles, to_device
from hoi.inputs.loaders import inference_loader, train_loader
from hoi.models.heads import InteractionHead, build_head
from hoi.provenance import (
    FEATURE_FIELDS,
    annotation_mismatch,
    checkpoint_provenance,
    features_record,
    field_mismatches,
    resolve,
)
from hoi.training.train_val import build_train_val

BEST_NAME = "best.pth"

log = logging.getLogger(LOGGER_NAME)


def build_optimizer(cfg: HOITrainConfig,
                    head: InteractionHead) -> tuple[torch.optim.SGD, list[dict[str, Any]]]:
    """SGD over the head's parameter groups, and the groups' specs (``name``, base ``lr``,
    ``scheduled``) in the optimiser's order."""
    groups = head.param_groups(cfg.optim.lr)
    specs = [{k: g[k] for k in ("name", "lr", "scheduled")} for g in groups]
    optimizer = torch.optim.SGD([{"params": g["params"], "lr": g["lr"]} for g in groups],
                                lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                weight_decay=cfg.optim.weight_decay)
    return optimizer, specs


def set_epoch_lrs(optimizer: torch.optim.Optimizer, specs: list[dict[str, Any]],
                  cfg: OptimConfig, epoch: int) -> None:
    """The rates of (0-based) ``epoch``: each scheduled group's base rate times
    :func:`lr_multiplier`, the others at their own."""
    factor = lr_multiplier(cfg, epoch)
    for group, spec in zip(optimizer.param_groups, specs):
        group["lr"] = spec["lr"] * (factor if spec["scheduled"] else 1.0)


def compute_loss(cfg: HOITrainConfig, head: InteractionHead, outputs: Mapping[str, torch.Tensor],
                 batch: Mapping[str, torch.Tensor],
                 world_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss to backpropagate, summed loss, global normaliser). The normaliser (images or pairs,
    times verbs) is summed over processes, so that DDP's gradient average gives the gradient
    of (total loss / global normaliser), whatever each process holds."""
    total = head.loss(outputs, batch)
    count = LOSS_NORMALIZERS[cfg.optim.loss_normalizer](batch) * batch["labels"].shape[1]
    norm = all_reduce_sum(total.new_full((1,), float(count), dtype=torch.float32))[0]
    return total * world_size / norm.clamp(min=1.0), total.detach(), norm


class HeadsTrainer(Trainer):
    """``hoi train``: the head of ``cfg.model`` on the cached features of ``cfg.data``."""

    cfg: HOITrainConfig

    def __init__(self, cfg: HOITrainConfig, dist: DistInfo) -> None:
        super().__init__(cfg, dist)
        self.best, self.best_epoch = -1.0, -1
        # the provenance of the training files, saved in every checkpoint
        self.provenance: dict[str, Any] | None = None
        # set by run(): the split's files, the validation images, the loader, the head's groups
        self.files: SplitFiles | None = None
        self.val_set: HOIDataset | None = None
        self.val_idx = np.zeros(0, dtype=np.int64)
        self.loader: DataLoader | None = None
        self.group_specs: list[dict[str, Any]] = []

    def arch(self) -> dict[str, Any]:
        return model_arch(self.cfg)

    def upgrade_checkpoint(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        return dict(ckpt, config=upgrade_run_config(ckpt.get("config", {})))

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"provenance": json.dumps(self.provenance, sort_keys=True), "best": self.best,
                "best_epoch": self.best_epoch}

    def restore_extra(self, ckpt: dict[str, Any], path: Path) -> None:
        saved = checkpoint_provenance(ckpt)
        # the same data as the interrupted run
        if saved is not None and self.provenance is not None:
            now = self.provenance
            now["accepted_mismatches"] += resolve(
                [annotation_mismatch(path, {"annotation": saved.get("annotation") or {}},
                                     now["files"]["annotations"], now["annotation"])]
                + field_mismatches(f"the training features of {path}",
                                   features_record(saved.get("features") or {}),
                                   now["files"]["features"], features_record(now["features"]),
                                   FEATURE_FIELDS),
                self.cfg.data.allow_mismatch, "data.allow_mismatch=true")
        self.best, self.best_epoch = float(ckpt.get("best", -1.0)), int(ckpt.get("best_epoch", -1))

    def before_epoch(self, epoch: int) -> None:
        self.loader.batch_sampler.set_epoch(epoch)
        set_epoch_lrs(self.state.optimizer, self.group_specs, self.cfg.optim, epoch)

    def train_epoch(self, epoch: int, writer: MetricsWriter) -> dict[str, float]:
        cfg, state, dist = self.cfg, self.state, self.dist
        state.model.train()
        device = dist.device
        iters = len(self.loader)
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, normaliser, pairs, images
        watch = FiniteWatch(device, self.checkpoint_path)
        start = time.time()
        bar = tqdm(self.loader, total=iters, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                   leave=False,
                   disable=not (dist.is_main and cfg.progress), dynamic_ncols=True)
        for i, batch in enumerate(bar):
            batch = to_device(batch, device)
            with autocast(device, state.amp_dtype):
                outputs = state.model(batch)
            loss, total, norm = compute_loss(cfg, state.bare, outputs, batch, dist.world_size)
            watch.update(outputs, loss, i)
            self.optimizer_step(loss)
            # running sums on the device: nothing here waits for the step to finish
            sums[0] += total.double()
            if dist.is_main:
                sums[1] += norm.double()
            sums[2] += batch["pair_h"].shape[0]
            sums[3] += batch["features"].shape[0]
            if (i + 1) % cfg.log_every == 0:
                watch.check(epoch, iters)
                value = loss.item() / dist.world_size
                writer.write(epoch * iters + i, {"train/loss_iter": value}, epoch=epoch + 1)
                bar.set_postfix(loss=f"{value:.4f}")
        watch.check(epoch, iters)
        total = all_reduce_sum(sums)
        elapsed = time.time() - start
        groups = state.optimizer.param_groups
        return {
            "train/loss": (total[0] / total[1].clamp(min=1)).item(),
            "train/lr": groups[0]["lr"],
            **{f"train/{spec['name']}_lr": g["lr"] for g, spec in zip(groups[1:],
                                                                      self.group_specs[1:])},
            "train/pairs_per_s": total[2].item() / max(elapsed, 1e-9),
            "train/images": int(total[3].item()),
            "time/train_s": elapsed,
        }

    def after_epoch(self, epoch: int, metrics: dict[str, float]) -> Path | None:
        cfg = self.cfg
        if self.val_set is None:  # nothing held out: the last epoch is the model
            return self.output_dir / BEST_NAME
        if (epoch + 1) % cfg.eval_every and epoch + 1 != cfg.optim.epochs:
            return None
        metrics.update(self.validate())
        score = metrics[SELECT_METRICS[cfg.select_metric]]
        if score <= self.best:
            return None
        self.best, self.best_epoch = score, epoch
        return self.output_dir / BEST_NAME

    def validate(self) -> dict[str, float]:
        """mAP (Default setting) on the held-out training images, gathered over processes."""
        cfg, dist, anno, val_idx = self.cfg, self.dist, self.files.anno, self.val_idx
        start = time.time()
        loader = inference_loader(self.val_set, cfg.test.batch_size, cfg.data.workers, dist.rank,
                                  dist.world_size,
                                  dist.device.type == "cuda")
        parts = predict(self.state.bare, loader, dist.device, cfg.test, self.state.amp_dtype,
                        cfg.progress and dist.is_main)
        gathered = all_gather_objects(parts)
        metrics: dict[str, float] = {}
        if dist.is_main:
            position = np.full(len(anno["filenames"]), -1, dtype=np.int64)
            position[val_idx] = np.arange(len(val_idx))
            det = concat_rows([p for rank_parts in gathered for p in rank_parts])
            det.image_index = position[det.image_index]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # classes absent from the held-out images
                sub = subset_annotations(anno, val_idx)
                result = evaluate(sub, det, "default")["default"]
            present = pair_counts(sub, len(result.ap)) > 0
            metrics = {"val/map_full": result.full, "val/map_rare": result.rare_map,
                       "val/map_non_rare": result.non_rare_map,
                       # the held-out images lack many classes, whose AP is 0 in the official mean
                       "val/map_present": float(result.ap[present].mean()) if present.any()
                       else 0.0,
                       "time/val_s": time.time() - start}
        return all_gather_objects(metrics)[0]

    def finished(self, last: int) -> None:
        if self.val_set is not None:
            log.info("done; best validation mAP (%s) %.4f at epoch %d: %s", self.cfg.select_metric,
                     self.best,
                     self.best_epoch + 1, self.output_dir / BEST_NAME)
        else:
            log.info("done (nothing held out, best.pth is the last epoch): %s",
                     self.output_dir / BEST_NAME)

    def run(self, resume: str | Path | None = None) -> dict[str, float]:
        cfg, dist = self.cfg, self.dist
        self.start(resume)
        # refuses mismatched files before any work
        self.files = open_run_split(cfg, cfg.data.train_split)
        train_set, self.val_set, self.val_idx = build_train_val(cfg, self.files, self.output_dir,
                                                                write=dist.is_main)
        if len(train_set) == 0:
            raise ValueError(f"no training image has a human-object pair among its detections "
                             f"({self.files.detections.path})")
        self.loader = train_loader(train_set, cfg.optim.batch_size, cfg.seed, cfg.data.workers,
                                   dist.rank,
                                   dist.world_size, dist.device.type == "cuda",
                                   cfg.optim.iters_per_epoch)
        self.iters = len(self.loader)
        if self.iters == 0:
            raise ValueError(f"{len(train_set)} training images make no full batch of "
                             f"optim.batch_size={cfg.optim.batch_size}")
        log.info("%d training images, %d held out for validation; %d iterations per epoch of %d "
                 "images x %d processes", len(train_set), len(self.val_idx), self.iters,
                 cfg.optim.batch_size // dist.world_size,
                 dist.world_size)
        self.save_config()

        head = build_head(cfg.model).to(dist.device)
        optimizer, self.group_specs = build_optimizer(cfg, head)
        self.new_state(head, optimizer, cfg.amp, amp_dtype=cfg.amp_dtype)
        log.info("%s head: %.3fM parameters (%s)", cfg.model.name,
                 sum(p.numel() for p in head.parameters()) / 1e6,
                 ", ".join(f"{g['name']} {sum(p.numel() for p in g['params']) / 1e6:.3f}M"
                           for g in head.param_groups(cfg.optim.lr)))
        self.provenance = self.files.provenance()
        # checkpoint.pth (weights + momentum), best.pth (weights), a temp copy while saving
        if dist.is_main:
            param_bytes = sum(p.numel() * p.element_size() for p in head.parameters())
            require_free_space(self.output_dir, 5 * param_bytes, "the checkpoints")
        if cfg.optim.epochs == 0:  # the model at its initial weights, as a baseline to compare with
            self.save(-1, {}, self.output_dir / BEST_NAME)
            log.info("optim.epochs=0: saved the untrained model to %s", self.output_dir / BEST_NAME)
            return {}
        if resume is not None:
            self.resume(resume)
        return self.run_epochs()


def run_training(cfg: HOITrainConfig, dist: DistInfo,
                 resume: str | Path | None = None) -> dict[str, float]:
    """Train the head of ``cfg.model`` per ``cfg``; checkpoint every epoch to ``output_dir``.

    Returns the metrics of the last epoch run (train/*, val/*).
    """
    return HeadsTrainer(cfg, dist).run(resume)
