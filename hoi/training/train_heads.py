"""The VSGNet training loop on cached features: one epoch of training, validation mAP on the
held-out part of train (never on test), and the run around them (set-up, resume, a checkpoint
every epoch, best.pth by validation mAP, metrics).

Runs as one process or under ``torchrun`` (DDP; gloo on CPU). k processes with a total batch
B compute what one process with batch B computes: each rank takes its part of every global
batch, BatchNorm statistics are reduced over all ranks, and the loss normaliser is global.
A resumed run with the same number of processes ends with the same weights as an
uninterrupted one: the data order depends only on (seed, epoch), the learning rates only on
the epoch, and the checkpoint holds model, optimizer, scaler, epoch and RNG states.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from hoi.config import to_dict, to_yaml
from hoi.data.annotations import pair_counts
from hoi.engine.checkpoint import CheckpointError, arch_mismatch, atomic_save, load_checkpoint
from hoi.engine.disk import require_free_space
from hoi.engine.distributed import DistInfo, all_gather_objects, all_reduce_sum, barrier
from hoi.engine.logging import LOGGER_NAME, MetricsWriter, setup_logging
from hoi.engine.seed import capture_rng_state, restore_rng_state, seed_everything
from hoi.evaluation import evaluate
from hoi.hoi_config import HOITrainConfig, lr_multiplier
from hoi.inference.scoring import concat_rows, predict
from hoi.inputs.dataset import HOIDataset, to_device
from hoi.inputs.loaders import (
    build_train_val,
    inference_loader,
    open_split,
    subset_annotations,
    train_loader,
)
from hoi.models.heads.vsgnet import VSGNet, VSGNetOutput, bce_log_space
from hoi.provenance import (
    FEATURE_FIELDS,
    annotation_mismatch,
    features_record,
    field_mismatches,
    resolve,
)

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"
RUN_CONTROL_KEYS = ("stop_after_epoch", "progress", "output_dir", "log_every", "data.workers",
                    "dist_timeout_s", "tensorboard")

log = logging.getLogger(LOGGER_NAME)


def model_arch(cfg: HOITrainConfig) -> dict[str, Any]:
    """What a checkpoint's weights fit: the model config and the backbone of the features."""
    return {"model": "vsgnet", "backbone": cfg.arch, "heads": to_dict(cfg.model)}


def checkpoint_provenance(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The provenance of the files a checkpoint was trained on (None for older checkpoints)."""
    raw = ckpt.get("provenance")
    return json.loads(raw) if isinstance(raw, str) else None


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that fails with the missing, unexpected and mis-shaped keys listed."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing keys {missing}" if missing else "", f"unexpected keys {unexpected}" if unexpected else "",
                 ("mismatched shapes: " + "; ".join(shapes)) if shapes else ""]
        raise CheckpointError(f"{source}: weights of another model: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state)


@dataclass
class TrainState:
    model: nn.Module  # the DDP wrapper in a distributed run
    bare: VSGNet
    optimizer: torch.optim.SGD
    scaler: torch.amp.GradScaler
    use_amp: bool
    start_epoch: int = 0
    best: float = -1.0
    best_epoch: int = -1
    provenance: dict[str, Any] | None = None  # of the training files, saved in every checkpoint


def build_optimizer(cfg: HOITrainConfig, model: VSGNet) -> torch.optim.SGD:
    """SGD, two groups: 0 = every parameter but the spatial-attention branch, 1 = that branch."""
    spatial = {id(p) for p in model.spatial_parameters()}
    main = [p for p in model.parameters() if id(p) not in spatial]
    o = cfg.optim
    return torch.optim.SGD([{"params": main, "lr": o.lr}, {"params": model.spatial_parameters(), "lr": o.spatial_lr}],
                           lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def set_epoch_lr(cfg: HOITrainConfig, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    optimizer.param_groups[0]["lr"] = cfg.optim.lr * lr_multiplier(cfg.optim, epoch)
    optimizer.param_groups[1]["lr"] = cfg.optim.spatial_lr


def check_finite(out: VSGNetOutput, loss: torch.Tensor, epoch: int, it: int, iters: int) -> None:
    """Stop at the first non-finite value, naming the loss term or branch it came from."""
    bad = [f"{name} logits" for name, x in out.items() if not bool(torch.isfinite(x).all())]
    if not bool(torch.isfinite(loss)):
        bad.append(f"loss term 'bce' ({loss.item()})")
    if bad:
        raise FloatingPointError(
            f"non-finite {', '.join(bad)} at epoch {epoch + 1}, iteration {it + 1}/{iters}: stopping "
            f"(lower optim.lr, or resume from the last checkpoint)"
        )


def compute_loss(cfg: HOITrainConfig, model: VSGNet, out: VSGNetOutput, batch: dict[str, torch.Tensor],
                 world_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss to backpropagate, summed BCE, global normaliser). The normaliser (images or pairs,
    times verbs) is summed over processes, so that DDP's gradient average gives the gradient
    of (total BCE / global normaliser), whatever each process holds."""
    log_p, valid = model.log_scores(out, batch)
    total = bce_log_space(log_p, batch["labels"].float(), valid)
    count = batch["features"].shape[0] if cfg.optim.loss_normalizer == "images" else batch["pair_h"].shape[0]
    norm = all_reduce_sum(torch.tensor([float(count * cfg.model.num_verbs)], device=log_p.device))[0]
    return total * world_size / norm.clamp(min=1.0), total.detach(), norm


def train_one_epoch(cfg: HOITrainConfig, state: TrainState, loader, epoch: int, dist: DistInfo,
                    writer: MetricsWriter) -> dict[str, float]:
    state.model.train()
    device = dist.device
    iters = len(loader)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # bce, normaliser, pairs, images
    start = time.time()
    bar = tqdm(loader, total=iters, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
               disable=not (dist.is_main and cfg.progress), dynamic_ncols=True)
    for i, batch in enumerate(bar):
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=state.use_amp):
            out = state.model(batch)
        loss, bce, norm = compute_loss(cfg, state.bare, out, batch, dist.world_size)
        check_finite(out, loss, epoch, i, iters)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        if cfg.optim.clip_grad_norm is not None:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(state.model.parameters(), cfg.optim.clip_grad_norm)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        local = torch.tensor([bce.item(), 0.0, batch["pair_h"].shape[0], batch["features"].shape[0]],
                             dtype=torch.float64, device=device)
        if dist.is_main:
            local[1] = norm.double()
        sums += local
        if (i + 1) % cfg.log_every == 0:
            writer.write(epoch * iters + i, {"train/loss_iter": loss.item() / dist.world_size}, epoch=epoch + 1)
            bar.set_postfix(loss=f"{loss.item() / dist.world_size:.4f}")
    total = all_reduce_sum(sums)
    elapsed = time.time() - start
    return {
        "train/loss": (total[0] / total[1].clamp(min=1)).item(),
        "train/lr": state.optimizer.param_groups[0]["lr"],
        "train/spatial_lr": state.optimizer.param_groups[1]["lr"],
        "train/pairs_per_s": total[2].item() / max(elapsed, 1e-9),
        "train/images": int(total[3].item()),
        "time/train_s": elapsed,
    }


def validate(cfg: HOITrainConfig, state: TrainState, val: HOIDataset, anno: dict[str, Any],
             val_idx: np.ndarray, dist: DistInfo) -> dict[str, float]:
    """mAP (Default setting) on the held-out training images, gathered over processes."""
    start = time.time()
    loader = inference_loader(val, cfg.test.batch_size, cfg.data.workers, dist.rank, dist.world_size,
                              dist.device.type == "cuda")
    parts = predict(state.bare, loader, dist.device, cfg.test, state.use_amp, cfg.progress and dist.is_main)
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
                   "val/map_present": float(result.ap[present].mean()) if present.any() else 0.0,
                   "time/val_s": time.time() - start}
    return all_gather_objects(metrics)[0]


def _build_state(cfg: HOITrainConfig, dist: DistInfo) -> TrainState:
    model = VSGNet(cfg.model).to(dist.device)
    wrapped: nn.Module = model
    if dist.distributed:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    use_amp = cfg.amp and dist.device.type == "cuda"
    n_params = sum(p.numel() for p in model.parameters())
    log.info("VSGNet heads: %.3fM parameters (spatial-attention branch %.3fM)", n_params / 1e6,
             sum(p.numel() for p in model.spatial_parameters()) / 1e6)
    return TrainState(wrapped, model, build_optimizer(cfg, model),
                      torch.amp.GradScaler(dist.device.type, enabled=use_amp), use_amp)


def _resume(cfg: HOITrainConfig, state: TrainState, path: Path, dist: DistInfo, iters: int) -> None:
    ckpt = load_checkpoint(path, expected_arch=model_arch(cfg))
    changed = [d for d in arch_mismatch(ckpt.get("config", {}), to_dict(cfg)) if not d.startswith(RUN_CONTROL_KEYS)]
    if changed:
        log.warning("resuming %s with a changed config:\n  %s", path, "\n  ".join(changed))
    load_model_state(state.bare, ckpt["model"], str(path))
    saved = checkpoint_provenance(ckpt)
    if saved is not None and state.provenance is not None:  # the same data as the interrupted run
        now = state.provenance
        state.provenance["accepted_mismatches"] += resolve(
            [annotation_mismatch(path, {"annotation": saved.get("annotation") or {}}, now["files"]["annotations"],
                                 now["annotation"])]
            + field_mismatches(f"the training features of {path}", features_record(saved.get("features") or {}),
                               now["files"]["features"], features_record(now["features"]), FEATURE_FIELDS),
            cfg.data.allow_mismatch, "data.allow_mismatch=true")
    try:
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot restore the training state ({type(err).__name__}: {err})") from err
    state.start_epoch = int(ckpt["epoch"]) + 1
    state.best, state.best_epoch = float(ckpt.get("best", -1.0)), int(ckpt.get("best_epoch", -1))
    if ckpt.get("world_size") == dist.world_size and ckpt.get("iters_per_epoch") == iters:
        restore_rng_state(ckpt["rng"][dist.rank])
    else:
        log.warning("checkpoint written by %s process(es) with %s iterations per epoch, this run has %d and %d: "
                    "it continues, but not bit for bit as the original run would have",
                    ckpt.get("world_size"), ckpt.get("iters_per_epoch"), dist.world_size, iters)
        seed_everything(cfg.seed + 1000 * state.start_epoch, dist.rank)
    log.info("resumed from %s: %d epoch(s) done", path, state.start_epoch)


def _save(cfg: HOITrainConfig, state: TrainState, epoch: int, dist: DistInfo, iters: int,
          metrics: dict[str, Any], path: Path, best_path: Path | None) -> None:
    rng = all_gather_objects(capture_rng_state())
    if dist.is_main:
        common = {"arch": model_arch(cfg), "model": state.bare.state_dict(), "epoch": epoch,
                  "config": to_dict(cfg), "metrics": {k: float(v) for k, v in metrics.items()},
                  "provenance": json.dumps(state.provenance, sort_keys=True)}
        if best_path is not None:
            atomic_save(common, best_path)
        atomic_save({**common, "optimizer": state.optimizer.state_dict(), "scaler": state.scaler.state_dict(),
                     "world_size": dist.world_size, "iters_per_epoch": iters, "rng": rng,
                     "best": state.best, "best_epoch": state.best_epoch}, path)
    barrier()


def run_training(cfg: HOITrainConfig, dist: DistInfo, resume: str | Path | None = None) -> dict[str, float]:
    """Train the VSGNet heads per ``cfg``; checkpoint every epoch to ``output_dir``.

    Returns the metrics of the last epoch run (train/*, val/*).
    """
    output_dir = Path(cfg.output_dir)
    if dist.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    setup_logging(output_dir, dist.is_main)
    log.info("command line: %s", " ".join(sys.argv))
    log.info("python %s, torch %s; %d process(es), device %s", platform.python_version(), torch.__version__,
             dist.world_size, dist.device)
    ckpt_path = output_dir / CHECKPOINT_NAME
    if resume is None and ckpt_path.exists():
        raise CheckpointError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another output_dir")
    seed_everything(cfg.seed, dist.rank)

    files = open_split(cfg, cfg.data.train_split)  # refuses mismatched files before anything trains
    train_set, val_set, val_idx = build_train_val(cfg, files, output_dir, write=dist.is_main)
    if len(train_set) == 0:
        raise ValueError(f"no training image has a human-object pair among its detections ({files.detections.path})")
    loader = train_loader(train_set, cfg, dist.rank, dist.world_size, dist.device.type == "cuda")
    iters = len(loader)
    if iters == 0:
        raise ValueError(f"{len(train_set)} training images make no full batch of optim.batch_size={cfg.optim.batch_size}")
    log.info("%d training images, %d held out for validation; %d iterations per epoch of %d images x %d processes",
             len(train_set), len(val_idx), iters, cfg.optim.batch_size // dist.world_size, dist.world_size)
    if dist.is_main:
        (output_dir / "config.yaml").write_text(to_yaml(cfg))
    log.info("config:\n%s", to_yaml(cfg))

    state = _build_state(cfg, dist)
    state.provenance = files.provenance()
    if dist.is_main:  # checkpoint.pth (weights + momentum), best.pth (weights), a temp copy while saving
        param_bytes = sum(p.numel() * p.element_size() for p in state.bare.parameters())
        require_free_space(output_dir, 5 * param_bytes, "the checkpoints")
    if cfg.optim.epochs == 0:  # the model at its initial weights, as a baseline to compare with
        _save(cfg, state, -1, dist, iters, {}, ckpt_path, output_dir / BEST_NAME)
        log.info("optim.epochs=0: saved the untrained model to %s", output_dir / BEST_NAME)
        return {}
    if resume is not None:
        _resume(cfg, state, Path(resume), dist, iters)
    metrics: dict[str, float] = {}
    last = cfg.optim.epochs if cfg.stop_after_epoch is None else min(cfg.optim.epochs, cfg.stop_after_epoch)
    with MetricsWriter(output_dir, enabled=dist.is_main, purge_step=state.start_epoch * iters,
                       tensorboard=cfg.tensorboard) as writer:
        for epoch in range(state.start_epoch, last):
            loader.batch_sampler.set_epoch(epoch)
            set_epoch_lr(cfg, state.optimizer, epoch)
            metrics = train_one_epoch(cfg, state, loader, epoch, dist, writer)
            best_path = None
            if val_set is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs):
                metrics.update(validate(cfg, state, val_set, files.anno, val_idx, dist))
                score = metrics[f"val/map_{cfg.select_metric}"]
                if score > state.best:
                    state.best, state.best_epoch, best_path = score, epoch, output_dir / BEST_NAME
            elif val_set is None:  # nothing held out: the last epoch is the model
                best_path = output_dir / BEST_NAME
            writer.write((epoch + 1) * iters - 1, metrics, epoch=epoch + 1)
            log.info("epoch %d/%d: %s", epoch + 1, cfg.optim.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if not k.startswith("time/")))
            _save(cfg, state, epoch, dist, iters, metrics, ckpt_path, best_path)
    if last < cfg.optim.epochs:
        log.info("stopped after epoch %d of %d (stop_after_epoch); continue with --resume", last, cfg.optim.epochs)
    elif val_set is not None:
        log.info("done; best validation mAP (%s) %.4f at epoch %d: %s", cfg.select_metric, state.best,
                 state.best_epoch + 1, output_dir / BEST_NAME)
    else:
        log.info("done (nothing held out, best.pth is the last epoch): %s", output_dir / BEST_NAME)
    return metrics
