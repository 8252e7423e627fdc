"""The classification training loop: one epoch of training, a sharded evaluation, and the
run around them (set-up, resume, checkpoint every epoch, metrics).

Runs as one process or as one of several under ``torchrun`` (DDP). A resumed run with the
same number of processes ends with the same weights as an uninterrupted one: the
checkpoint holds the model, optimizer, scheduler, scaler, epoch and every process's RNG
states, and the data order depends only on (seed, epoch).
"""

from __future__ import annotations

import logging
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from hoi.config import to_dict, to_yaml
from hoi.engine.checkpoint import CheckpointError, arch_mismatch, atomic_save, load_checkpoint
from hoi.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_gather_variable,
    all_reduce_sum,
    barrier,
)
from hoi.engine.logging import LOGGER_NAME, MetricsWriter, setup_logging
from hoi.engine.seed import capture_rng_state, restore_rng_state, seed_everything
from hoi.models.attention import ATTENTION_BLOCKS
from hoi.models.backbones import AttentionResNet
from hoi.models.weights import count_parameters, load_backbone_weights
from hoi.pretrain.imagefolder import Batch
from hoi.pretrain.imagefolder_loaders import build_datasets, build_loaders
from hoi.pretrain.pretrain_config import PretrainConfig
from hoi.pretrain.schedule import warmup_step_scheduler

CHECKPOINT_NAME = "checkpoint.pth"
# keys whose change between the interrupted and the resumed run is expected
RUN_CONTROL_KEYS = ("stop_after_epoch", "progress", "output_dir", "log_every", "data.workers", "dist_timeout_s")

log = logging.getLogger(LOGGER_NAME)


@dataclass
class TrainState:
    """Everything that the loop updates and a checkpoint restores."""

    model: nn.Module  # the DDP wrapper in a distributed run
    bare: AttentionResNet  # the model itself
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool
    start_epoch: int = 0


def build_optimizer(cfg: PretrainConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum; attention-block parameters in their own group (lr x attention_lr_mult)."""
    attention_types = tuple(ATTENTION_BLOCKS.values())
    attention_params = {
        id(p) for m in model.modules() if isinstance(m, attention_types) for p in m.parameters()
    }
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in attention_params], "lr": cfg.optim.lr}]
    attention = [p for p in params if id(p) in attention_params]
    if attention:
        groups.append({"params": attention, "lr": cfg.optim.lr * cfg.optim.attention_lr_mult})
    return torch.optim.SGD(
        groups,
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
        weight_decay=cfg.optim.weight_decay,
    )


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """(B, C) logits, (B,) targets -> (B, len(ks)) bool: is the target among the top k?
    k is capped at C (with 3 classes "top-5" is always right)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices == targets[:, None]
    return torch.stack([top[:, : min(k, kmax)].any(dim=1) for k in ks], dim=1)


def train_one_epoch(
    cfg: PretrainConfig,
    state: TrainState,
    loader: torch.utils.data.DataLoader,
    epoch: int,
    dist: DistInfo,
    writer: MetricsWriter,
) -> dict[str, float]:
    """One pass over this process's shard of the training set; metrics averaged over processes."""
    state.model.train()
    device = dist.device
    iters = len(loader)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss * n, top-1 correct, n, skipped
    start, lr = time.time(), float("nan")
    bar = tqdm(loader, total=iters, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
               disable=not (dist.is_main and cfg.progress), dynamic_ncols=True)
    for i, batch in enumerate(bar):
        batch: Batch
        images = batch.images.to(device, non_blocking=True)
        targets = batch.targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=state.use_amp):
            logits = state.model(images)
            loss = F.cross_entropy(logits, targets, label_smoothing=cfg.optim.label_smoothing)
        if not torch.isfinite(loss).item():
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {epoch + 1}, iteration {i + 1}/{iters}: "
                f"stopping (lower optim.lr, or resume from the last checkpoint)"
            )
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        if cfg.optim.clip_grad_norm is not None:
            state.scaler.unscale_(state.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(state.model.parameters(), cfg.optim.clip_grad_norm)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        lr = state.optimizer.param_groups[0]["lr"]
        state.scheduler.step()
        n = targets.shape[0]
        with torch.no_grad():
            correct = topk_correct(logits.detach(), targets, (1,))[:, 0].sum()
        sums += torch.stack([loss.detach().double() * n, correct.double(),
                             torch.tensor(n, dtype=torch.float64, device=device),
                             torch.tensor(batch.skipped, dtype=torch.float64, device=device)])
        step = epoch * iters + i
        if (i + 1) % cfg.log_every == 0:
            writer.write(step, {"train/loss_iter": loss.item(), "train/lr_iter": lr}, epoch=epoch + 1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4g}")
    total = all_reduce_sum(sums)
    elapsed = time.time() - start
    return {
        "train/loss": (total[0] / total[2]).item(),
        "train/top1": (100.0 * total[1] / total[2]).item(),
        "train/lr": lr,  # of the epoch's last iteration
        "train/skipped_images": int(total[3].item()),
        "train/images_per_s": total[2].item() / max(elapsed, 1e-9),
        "time/train_s": elapsed,
    }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    dist: DistInfo,
    use_amp: bool,
    progress: bool = False,
) -> dict[str, float]:
    """Top-1, top-5 (in %) and mean loss over the whole validation set.

    Each process evaluates its shard (no padding, so no image counts twice); per-image results
    are gathered from all processes. Give the bare model, not the DDP wrapper: the shards
    differ in length, and DDP's forward may talk to the other processes.
    """
    model.eval()
    device = dist.device
    rows, losses, skipped = [], [], 0
    start = time.time()
    for batch in tqdm(loader, desc="eval", leave=False, disable=not (dist.is_main and progress), dynamic_ncols=True):
        batch: Batch
        images = batch.images.to(device, non_blocking=True)
        targets = batch.targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(images)
        logits = logits.float()
        losses.append(F.cross_entropy(logits, targets, reduction="none").double())
        correct = topk_correct(logits, targets, (1, 5)).long()
        rows.append(torch.cat([batch.indices.to(device)[:, None], correct], dim=1))
        skipped += batch.skipped
    local_rows = torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.long, device=device)
    local_losses = torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64, device=device)
    all_rows = all_gather_variable(local_rows)
    all_losses = all_gather_variable(local_losses)
    skipped_total = int(all_reduce_sum(torch.tensor([skipped], device=device))[0].item())
    n = all_rows.shape[0]
    expected = len(loader.dataset) - skipped_total
    if n != expected or torch.unique(all_rows[:, 0]).numel() != n:
        raise RuntimeError(f"evaluation gathered {n} results for {expected} images: the shards overlap or miss images")
    return {
        "val/top1": 100.0 * all_rows[:, 1].sum().item() / max(n, 1),
        "val/top5": 100.0 * all_rows[:, 2].sum().item() / max(n, 1),
        "val/loss": all_losses.mean().item() if n else float("nan"),
        "val/images": n,
        "val/skipped_images": skipped_total,
        "time/eval_s": time.time() - start,
    }


def _log_setup(cfg: PretrainConfig, dist: DistInfo, output_dir: Path) -> None:
    log.info("command line: %s", " ".join(sys.argv))
    log.info(
        "python %s, torch %s, %s; %d process(es), device %s",
        platform.python_version(), torch.__version__,
        f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(dist.device)}" if dist.device.type == "cuda" else "CPU",
        dist.world_size, dist.device,
    )
    log.info("output folder: %s", output_dir.resolve())


def _build_state(cfg: PretrainConfig, dist: DistInfo, iters_per_epoch: int, resuming: bool) -> TrainState:
    model = AttentionResNet(cfg.backbone)
    if cfg.init_weights and not resuming:
        report = load_backbone_weights(model, cfg.init_weights, ignore_classifier=cfg.init_ignore_classifier)
        log.info(
            "initial weights from %s%s; %d attention parameters start as the identity%s",
            report.source, f" (sha256 {report.sha256})" if report.sha256 else "",
            len(report.missing_attention),
            f"; classifier not loaded ({len(report.missing)} keys)" if report.missing else "",
        )
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = cfg.bn_momentum
    if cfg.sync_bn and dist.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(dist.device)
    wrapped: nn.Module = model
    if dist.distributed:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    optimizer = build_optimizer(cfg, model)
    o = cfg.optim
    scheduler = warmup_step_scheduler(
        optimizer, iters_per_epoch, o.warmup_epochs, o.warmup_start_factor, o.lr_step_epochs, o.lr_gamma
    )
    use_amp = cfg.amp and dist.device.type == "cuda"
    scaler = torch.amp.GradScaler(dist.device.type, enabled=use_amp)
    log.info("model: ResNet-%d, attention %s, %d classes, %.3fM parameters",
             cfg.backbone.depth, cfg.backbone.attention.type, cfg.backbone.num_classes,
             count_parameters(model) / 1e6)
    return TrainState(wrapped, model, optimizer, scheduler, scaler, use_amp)


def _resume(cfg: PretrainConfig, state: TrainState, path: Path, dist: DistInfo, iters_per_epoch: int) -> None:
    ckpt = load_checkpoint(path, expected_arch=to_dict(cfg.backbone))
    saved_cfg = ckpt.get("config", {})
    changed = [d for d in arch_mismatch(saved_cfg, to_dict(cfg)) if not d.startswith(RUN_CONTROL_KEYS)]
    if changed:
        log.warning("resuming %s with a changed config:\n  %s", path, "\n  ".join(changed))
    try:
        state.bare.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
        state.scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot restore the training state ({type(err).__name__}: {err})") from err
    state.start_epoch = int(ckpt["epoch"]) + 1
    same_world = ckpt.get("world_size") == dist.world_size and ckpt.get("iters_per_epoch") == iters_per_epoch
    if same_world:
        restore_rng_state(ckpt["rng"][dist.rank])
    else:
        log.warning(
            "checkpoint written by %s process(es) with %s iterations per epoch; this run has %d and %d: "
            "training continues, but not bit-for-bit as the original run would have",
            ckpt.get("world_size"), ckpt.get("iters_per_epoch"), dist.world_size, iters_per_epoch,
        )
        seed_everything(cfg.seed + 1000 * state.start_epoch, dist.rank)
        state.scheduler.last_epoch = state.start_epoch * iters_per_epoch - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state.scheduler.step()
    log.info("resumed from %s: %d epoch(s) done", path, state.start_epoch)


def _save_checkpoint(cfg: PretrainConfig, state: TrainState, epoch: int, dist: DistInfo,
                     iters_per_epoch: int, classes: list[str], metrics: dict[str, Any], path: Path) -> None:
    rng = all_gather_objects(capture_rng_state())  # every rank's, so each resumes its own
    if dist.is_main:
        atomic_save({
            "arch": to_dict(cfg.backbone),
            "model": state.bare.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict(),
            "epoch": epoch,
            "world_size": dist.world_size,
            "iters_per_epoch": iters_per_epoch,
            "rng": rng,
            "config": to_dict(cfg),
            "classes": classes,
            "metrics": {k: float(v) for k, v in metrics.items()},
        }, path)
    barrier()


def run_pretraining(cfg: PretrainConfig, dist: DistInfo, resume: str | Path | None = None) -> dict[str, float]:
    """Train ``cfg.backbone`` on ``cfg.data`` for ``cfg.optim.epochs`` epochs (or until
    ``cfg.stop_after_epoch``), checkpointing to ``cfg.output_dir`` every epoch.

    Args:
        cfg: the resolved config; ``backbone.num_classes`` is set here from the dataset.
        dist: this process's place in the run (from :func:`hoi.engine.distributed.init_distributed`).
        resume: a checkpoint to continue from (refused if it is another architecture).
    Returns the metrics of the last epoch run.
    """
    output_dir = Path(cfg.output_dir)
    if dist.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(output_dir, dist.is_main)
    _log_setup(cfg, dist, output_dir)
    ckpt_path = output_dir / CHECKPOINT_NAME
    if resume is None and ckpt_path.exists():
        raise CheckpointError(
            f"{ckpt_path} exists: pass --resume to continue that run, or choose another output_dir"
        )
    seed_everything(cfg.seed, dist.rank)
    if dist.device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cudnn.deterministic = cfg.deterministic

    train_set, val_set = build_datasets(cfg)
    if cfg.backbone.num_classes != len(train_set.classes):
        log.info("backbone.num_classes = %d (class folders of %s)", len(train_set.classes), train_set.root)
        cfg.backbone.num_classes = len(train_set.classes)
    loaders = build_loaders(cfg, train_set, val_set, dist)
    iters = len(loaders.train)
    log.info("%d training images, %d validation images, %d classes; %d iterations per epoch of %d images x %d processes",
             len(train_set), len(val_set), len(train_set.classes), iters,
             cfg.optim.batch_size // dist.world_size, dist.world_size)
    if dist.is_main:
        (output_dir / "config.yaml").write_text(to_yaml(cfg))
        (output_dir / "classes.txt").write_text("".join(c + "\n" for c in train_set.classes))
    log.info("config:\n%s", to_yaml(cfg))

    state = _build_state(cfg, dist, iters, resuming=resume is not None)
    if resume is not None:
        _resume(cfg, state, Path(resume), dist, iters)

    metrics: dict[str, float] = {}
    last = cfg.optim.epochs if cfg.stop_after_epoch is None else min(cfg.optim.epochs, cfg.stop_after_epoch)
    with MetricsWriter(output_dir, enabled=dist.is_main, purge_step=state.start_epoch * iters,
                       tensorboard=cfg.tensorboard) as writer:
        for epoch in range(state.start_epoch, last):
            loaders.train_sampler.set_epoch(epoch)
            metrics = train_one_epoch(cfg, state, loaders.train, epoch, dist, writer)
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
                metrics.update(evaluate(state.bare, loaders.val, dist, state.use_amp, cfg.progress))
            writer.write((epoch + 1) * iters - 1, metrics, epoch=epoch + 1)
            log.info("epoch %d/%d: %s", epoch + 1, cfg.optim.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if not k.startswith("time/")))
            _save_checkpoint(cfg, state, epoch, dist, iters, loaders.classes, metrics, ckpt_path)
    if last < cfg.optim.epochs:
        log.info("stopped after epoch %d of %d (stop_after_epoch); continue with --resume", last, cfg.optim.epochs)
    else:
        log.info("done: %s", ckpt_path)
    return metrics


def default_checkpoint(cfg: PretrainConfig) -> Path:
    """Where a run writes (and ``--resume`` reads) its checkpoint."""
    return Path(cfg.output_dir) / CHECKPOINT_NAME

