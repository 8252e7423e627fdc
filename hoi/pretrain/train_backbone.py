"""ImageNet-style classification training of the attention ResNets (``hoi pretrain``): one
epoch of training, a sharded evaluation, on the shared engine (:mod:`hoi.engine.loop`: set-up,
resume, a checkpoint every epoch, metrics).

Runs as one process or as one of several under ``torchrun`` (DDP). A resumed run with the
same number of processes ends with the same weights as an uninterrupted one: the checkpoint
holds the model, optimizer, scheduler, scaler, epoch and every process's RNG states, and the
data order depends only on (seed, epoch).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hoi.config import to_dict
from hoi.engine.distributed import DistInfo, all_gather_variable, all_reduce_sum
from hoi.engine.finite import FiniteWatch
from hoi.engine.logging import LOGGER_NAME, MetricsWriter
from hoi.engine.loop import CHECKPOINT_NAME, Trainer
from hoi.engine.precision import autocast
from hoi.models.attention import attention_classes
from hoi.models.backbones import AttentionResNet, upgrade_backbone_record
from hoi.models.weights import count_parameters, load_backbone_weights
from hoi.pretrain.device_input import DeviceFeeder, decode_on_device, memory_format
from hoi.pretrain.imagefolder import Batch
from hoi.pretrain.imagefolder_loaders import Loaders, build_datasets, build_loaders
from hoi.pretrain.pretrain_config import PretrainConfig
from hoi.pretrain.schedule import warmup_step_scheduler

log = logging.getLogger(LOGGER_NAME)


def build_optimizer(cfg: PretrainConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum; attention-block parameters in their own group (lr x attention_lr_mult)."""
    attention_types = attention_classes()
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


def topk_correct(logits: torch.Tensor, targets: torch.Tensor,
                 ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """(B, C) logits, (B,) targets -> (B, len(ks)) bool: is the target among the top k?
    k is capped at C (with 3 classes "top-5" is always right)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices == targets[:, None]
    return torch.stack([top[:, : min(k, kmax)].any(dim=1) for k in ks], dim=1)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    dist: DistInfo,
    feed: DeviceFeeder,
    amp_dtype: torch.dtype | None,
    progress: bool = False,
) -> dict[str, float]:
    """Top-1, top-5 (in %) and mean loss over the whole validation set; ``feed`` turns a
    batch into normalised images on the device.

    Each process evaluates its shard (no padding, so no image counts twice); per-image results
    are gathered from all processes. Give the bare model, not the DDP wrapper: the shards
    differ in length, and DDP's forward may talk to the other processes.
    """
    model.eval()
    device = dist.device
    rows, losses, skipped = [], [], 0
    start = time.time()
    for batch in tqdm(loader, desc="eval", leave=False, disable=not (dist.is_main and progress),
                      dynamic_ncols=True):
        batch: Batch
        images, targets, _ = feed(batch)
        with autocast(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
        losses.append(F.cross_entropy(logits, targets, reduction="none").double())
        correct = topk_correct(logits, targets, (1, 5)).long()
        rows.append(torch.cat([batch.indices.to(device)[:, None], correct], dim=1))
        skipped += batch.skipped
    local_rows = torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.long, device=device)
    local_losses = torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64,
                                                                device=device)
    all_rows = all_gather_variable(local_rows)
    all_losses = all_gather_variable(local_losses)
    skipped_total = int(all_reduce_sum(torch.tensor([skipped], device=device))[0].item())
    n = all_rows.shape[0]
    expected = len(loader.dataset) - skipped_total
    if n != expected or torch.unique(all_rows[:, 0]).numel() != n:
        raise RuntimeError(f"evaluation gathered {n} results for {expected} images: the shards "
                           "overlap or miss images")
    return {
        "val/top1": 100.0 * all_rows[:, 1].sum().item() / max(n, 1),
        "val/top5": 100.0 * all_rows[:, 2].sum().item() / max(n, 1),
        "val/loss": all_losses.mean().item() if n else float("nan"),
        "val/images": n,
        "val/skipped_images": skipped_total,
        "time/eval_s": time.time() - start,
    }


class BackboneTrainer(Trainer):
    """``hoi pretrain``: ``cfg.backbone`` trained on the class folders of ``cfg.data``."""

    cfg: PretrainConfig

    def __init__(self, cfg: PretrainConfig, dist: DistInfo) -> None:
        super().__init__(cfg, dist)
        self.loaders: Loaders | None = None  # set by run()
        self.train_feed: DeviceFeeder | None = None
        self.val_feed: DeviceFeeder | None = None

    def arch(self) -> dict[str, Any]:
        return to_dict(self.cfg.backbone)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"classes": self.loaders.classes}

    def upgrade_checkpoint(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        ckpt = dict(ckpt, arch=upgrade_backbone_record(ckpt.get("arch", {})))
        if isinstance(ckpt.get("config", {}).get("backbone"), dict):
            ckpt["config"] = dict(ckpt["config"],
                                  backbone=upgrade_backbone_record(ckpt["config"]["backbone"]))
        return ckpt

    def before_epoch(self, epoch: int) -> None:
        self.loaders.train_sampler.set_epoch(epoch)

    def train_epoch(self, epoch: int, writer: MetricsWriter) -> dict[str, float]:
        """One pass over this process's shard of the training set; metrics averaged over
        processes."""
        cfg, state, dist, loader = self.cfg, self.state, self.dist, self.loaders.train
        state.model.train()
        device = dist.device
        iters = len(loader)
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * n, top-1 correct
        seen, skipped = 0, 0  # on the host: nothing in the loop waits for the device
        watch = FiniteWatch(device, self.checkpoint_path)
        start, lr = time.time(), float("nan")
        bar = tqdm(loader, total=iters, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
                   disable=not (dist.is_main and cfg.progress), dynamic_ncols=True)
        for i, batch in enumerate(bar):
            batch: Batch
            images, targets, failed = self.train_feed(batch)
            with autocast(device, state.amp_dtype):
                logits = state.model(images)
                loss = F.cross_entropy(logits, targets, label_smoothing=cfg.optim.label_smoothing)
            watch.update_named({"loss": loss}, i)
            self.optimizer_step(loss)
            lr = state.optimizer.param_groups[0]["lr"]
            state.scheduler.step()
            n = targets.shape[0]
            with torch.no_grad():
                correct = topk_correct(logits.detach(), targets, (1,))[:, 0].sum()
                sums += torch.stack([loss.detach().double() * n, correct.double()])
            seen += n
            skipped += batch.skipped + failed
            step = epoch * iters + i
            if (i + 1) % cfg.log_every == 0:
                watch.check(epoch, iters)
                value = loss.item()
                writer.write(step, {"train/loss_iter": value, "train/lr_iter": lr},
                             epoch=epoch + 1)
                bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.4g}")
        watch.check(epoch, iters)
        sums = torch.cat([sums, torch.tensor([seen, skipped], dtype=torch.float64, device=device)])
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

    def after_epoch(self, epoch: int, metrics: dict[str, float]) -> Path | None:
        cfg = self.cfg
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
            metrics.update(evaluate(self.state.bare, self.loaders.val, self.dist, self.val_feed,
                                    self.state.amp_dtype, cfg.progress))
        return None

    def build_model(self, resuming: bool) -> AttentionResNet:
        cfg, dist = self.cfg, self.dist
        model = AttentionResNet(cfg.backbone)
        if cfg.init_weights and not resuming:
            report = load_backbone_weights(model, cfg.init_weights,
                                           ignore_classifier=cfg.init_ignore_classifier)
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
        log.info("model: ResNet-%d, attention %s, %d classes, %.3fM parameters",
                 cfg.backbone.depth, cfg.backbone.attention.type, cfg.backbone.num_classes,
                 count_parameters(model) / 1e6)
        return model.to(dist.device)

    def run(self, resume: str | Path | None = None) -> dict[str, float]:
        cfg, dist = self.cfg, self.dist
        self.start(resume)
        if dist.device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.deterministic
            torch.backends.cudnn.deterministic = cfg.deterministic
        encoded = decode_on_device(cfg.data.decode, dist.device)
        train_set, val_set = build_datasets(cfg, encoded)
        if cfg.backbone.num_classes != len(train_set.classes):
            log.info("backbone.num_classes = %d (class folders of %s)", len(train_set.classes),
                     train_set.root)
            cfg.backbone.num_classes = len(train_set.classes)
        self.loaders = build_loaders(cfg, train_set, val_set, dist)
        fmt = memory_format(cfg.memory_format, dist.device)
        d = cfg.data
        self.train_feed = DeviceFeeder(dist.device, d.mean, d.std, d.train_crop, fmt, train_set)
        self.val_feed = DeviceFeeder(dist.device, d.mean, d.std, d.eval_crop, fmt, val_set)
        log.info("training images decoded %s; %s; memory format %s",
                 f"on {dist.device} (JPEG bytes from the workers)" if encoded
                 else "by the loader workers (uint8 to the device)",
                 f"{d.workers} worker(s) per process" + (", persistent" if d.persistent_workers
                                                         and d.workers else ""),
                 "channels_last" if fmt == torch.channels_last else "contiguous")
        self.iters = len(self.loaders.train)
        log.info("%d training images, %d validation images, %d classes; %d iterations per epoch of "
                 "%d images "
                 "x %d processes", len(train_set), len(val_set), len(train_set.classes), self.iters,
                 cfg.optim.batch_size // dist.world_size, dist.world_size)
        if dist.is_main:
            (self.output_dir / "classes.txt").write_text("".join(c + "\n"
                                                                 for c in train_set.classes))
        self.save_config()

        model = self.build_model(resuming=resume is not None).to(memory_format=fmt)
        optimizer = build_optimizer(cfg, model)
        o = cfg.optim
        scheduler = warmup_step_scheduler(optimizer, self.iters, o.warmup_epochs,
                                          o.warmup_start_factor,
                                          o.lr_step_epochs, o.lr_gamma)
        self.new_state(model, optimizer, cfg.amp, scheduler, cfg.amp_dtype)
        if resume is not None:
            self.resume(resume)
        return self.run_epochs()


def run_pretraining(cfg: PretrainConfig, dist: DistInfo,
                    resume: str | Path | None = None) -> dict[str, float]:
    """Train ``cfg.backbone`` on ``cfg.data`` for ``cfg.optim.epochs`` epochs (or until
    ``cfg.stop_after_epoch``), checkpointing to ``cfg.output_dir`` every epoch.

    Args:
        cfg: the resolved config; ``backbone.num_classes`` is set here from the dataset.
        dist: this process's place in the run (from
        :func:`hoi.engine.distributed.init_distributed`).
        resume: a checkpoint to continue from (refused if it is another architecture).
    Returns the metrics of the last epoch run.
    """
    return BackboneTrainer(cfg, dist).run(resume)


def default_checkpoint(cfg: PretrainConfig) -> Path:
    """Where a run writes (and ``--resume`` reads) its checkpoint."""
    return Path(cfg.output_dir) / CHECKPOINT_NAME
