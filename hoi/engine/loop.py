"""The training engine both trainings share (ImageNet pretraining and the HOI heads): set-up,
the epoch loop, the optimiser step, checkpoint save and exact resume.

A training subclasses :class:`Trainer` and fills in its hooks, in the spirit of pocket's
engine and detectron2's ``TrainerBase``:

- :meth:`Trainer.arch` the architecture record a checkpoint is checked against;
- :meth:`Trainer.train_epoch` one pass over the training data, returning its metrics;
- :meth:`Trainer.after_epoch` evaluation after an epoch (may add metrics and name a best file);
- :meth:`Trainer.checkpoint_extra` / :meth:`Trainer.restore_extra` what else a checkpoint holds.

The config is duck-typed: both trainings' configs have ``output_dir``, ``seed``,
``optim.epochs``, ``optim.clip_grad_norm``, ``stop_after_epoch``, ``tensorboard``, ``progress``
and ``log_every``. A resumed run with the same number of processes ends with the same weights as
an uninterrupted one: the checkpoint holds model, optimizer, scheduler, scaler, epoch and every
process's RNG states, and the data order depends only on (seed, epoch).
"""

from __future__ import annotations

import logging
import platform
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hoi.config import to_dict, to_yaml
from hoi.engine.checkpoint import (
    CheckpointError,
    arch_mismatch,
    atomic_save,
    check_arch,
    load_checkpoint,
)
from hoi.engine.distributed import DDPConfig, DistInfo, all_gather_objects, barrier
from hoi.engine.logging import LOGGER_NAME, MetricsWriter, setup_logging
from hoi.engine.precision import resolve_amp
from hoi.engine.seed import capture_rng_state, restore_rng_state, seed_everything
from hoi.errors import NonFiniteError

CHECKPOINT_NAME = "checkpoint.pth"
# keys whose change between the interrupted and the resumed run is expected (no warning)
RUN_CONTROL_KEYS = ("stop_after_epoch", "progress", "output_dir", "log_every", "data.workers",
                    "dist_timeout_s", "tensorboard")

log = logging.getLogger(LOGGER_NAME)


@dataclass
class TrainState:
    """Everything that the loop updates and a checkpoint restores."""

    model: nn.Module  # the DDP wrapper in a distributed run
    bare: nn.Module  # the model itself
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # enabled for float16 autocast only
    amp_dtype: torch.dtype | None  # autocast dtype (None: float32), hoi.engine.precision
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # stepped every iteration
    start_epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def use_amp(self) -> bool:
        return self.amp_dtype is not None


def wrap_ddp(model: nn.Module, dist: DistInfo, options: DDPConfig | None = None) -> nn.Module:
    """``model`` in DistributedDataParallel when the run has several processes."""
    if not dist.distributed:
        return model
    options = options or DDPConfig()
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids,
                                   gradient_as_bucket_view=options.gradient_as_bucket_view,
                                   static_graph=options.static_graph)


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that fails with the missing, unexpected and mis-shaped keys listed."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing keys {missing}" if missing else "",
                 f"unexpected keys {unexpected}" if unexpected else "",
                 ("mismatched shapes: " + "; ".join(shapes)) if shapes else ""]
        raise CheckpointError(f"{source}: weights of another model: "
                              + "; ".join(p for p in parts if p))
    model.load_state_dict(state)


def check_finite_weights(model: nn.Module, epoch: int, last_good: Path) -> None:
    """Raise NonFiniteError before a checkpoint would save non-finite weights or statistics
    (a step with a finite loss can still blow the weights up); one host read per epoch."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for t in tensors])
    if bool(finite.all()):
        return
    names = [k for (k, t), ok in zip(((k, t) for k, t in model.state_dict().items()
                                      if t.is_floating_point()), finite.tolist()) if not ok]
    resume = f"resume from {last_good}" if last_good.exists() else "start again"
    raise NonFiniteError(
        f"non-finite weights after epoch {epoch + 1} ({len(names)} tensors, first {names[0]}): "
        f"stopping without saving them (lower optim.lr, then {resume})")


class Trainer:
    """The skeleton of a training run; subclasses build data, model and state, then call
    :meth:`start`, :meth:`resume` (when asked) and :meth:`run_epochs`."""

    def __init__(self, cfg: Any, dist: DistInfo) -> None:
        self.cfg = cfg
        self.dist = dist
        self.output_dir = Path(cfg.output_dir)
        self.checkpoint_path = self.output_dir / CHECKPOINT_NAME
        self.state: TrainState | None = None
        self.iters = 0  # iterations per epoch, set by the subclass once its loader exists

    # ------------------------------------------------------------------ hooks
    def arch(self) -> dict[str, Any]:
        """What the checkpoint's weights fit (a resumed or tested checkpoint must match it)."""
        raise NotImplementedError

    def train_epoch(self, epoch: int, writer: MetricsWriter) -> dict[str, float]:
        """One pass over the training data; the epoch's metrics (``train/*``, ``time/*``)."""
        raise NotImplementedError

    def before_epoch(self, epoch: int) -> None:
        """Before :meth:`train_epoch` (shuffle for the epoch, learning rates)."""

    def after_epoch(self, epoch: int, metrics: dict[str, float]) -> Path | None:
        """Evaluation after an epoch: add to ``metrics``; return a path to save the weights to
        as the best model so far, or None."""
        return None

    def checkpoint_extra(self) -> dict[str, Any]:
        """What else the resumable checkpoint (and the best file) holds."""
        return {}

    def restore_extra(self, ckpt: dict[str, Any], path: Path) -> None:
        """Read back what :meth:`checkpoint_extra` saved (called on resume)."""

    def upgrade_checkpoint(self, ckpt: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint written by an older version, in today's layout (before it is checked)."""
        return ckpt

    def finished(self, last: int) -> None:
        """Log the end of a run that went through all its epochs."""
        log.info("done: %s", self.checkpoint_path)

    # ------------------------------------------------------------------ set-up
    def start(self, resume: str | Path | None) -> None:
        """Output folder, logging, the environment in the log, no second run into a folder that
        holds a checkpoint (unless resuming it), seeds. The folder's lock
        (:mod:`hoi.engine.run_lock`) is taken before anything is written into it and held until
        :meth:`release_run_lock` (the end of :meth:`run_epochs`)."""
        import weakref

        from hoi.engine.run_lock import acquire_run_lock

        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.run_lock = acquire_run_lock(self.output_dir, dist=self.dist)  # rank 0 takes it
        weakref.finalize(self, self.run_lock.release)
        barrier()
        setup_logging(self.output_dir, self.dist.is_main)
        if self.run_lock.takeover:
            log.warning("%s", self.run_lock.takeover)
        dist = self.dist
        log.info("command line: %s", " ".join(sys.argv))
        log.info("python %s, torch %s, %s; %d process(es), device %s", platform.python_version(),
                 torch.__version__,
                 f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(dist.device)}"
                 if dist.device.type == "cuda" else "CPU", dist.world_size, dist.device)
        log.info("output folder: %s", self.output_dir.resolve())
        if resume is None and self.checkpoint_path.exists():
            raise CheckpointError(f"{self.checkpoint_path} exists: pass --resume to continue that "
                                  f"run, or choose another output_dir")
        seed_everything(self.cfg.seed, dist.rank)

    def save_config(self) -> None:
        """The resolved config beside the outputs, and in the log."""
        if self.dist.is_main:
            (self.output_dir / "config.yaml").write_text(to_yaml(self.cfg))
        log.info("config:\n%s", to_yaml(self.cfg))

    def new_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, amp: bool,
                  scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                  amp_dtype: str = "fp16") -> TrainState:
        """The state of a fresh run: ``model`` (already on the device) wrapped for DDP; autocast
        only on a GPU (:func:`~hoi.engine.precision.resolve_amp`), a GradScaler only for
        float16."""
        dtype = resolve_amp(amp, amp_dtype, self.dist.device)
        scaler = torch.amp.GradScaler(self.dist.device.type, enabled=dtype == torch.float16)
        self.state = TrainState(wrap_ddp(model, self.dist, getattr(self.cfg, "ddp", None)), model,
                                optimizer, scaler, dtype, scheduler)
        return self.state

    # ------------------------------------------------------------------ one step
    def optimizer_step(self, loss: torch.Tensor) -> None:
        """Backward of ``loss`` and one optimiser step, through the GradScaler; gradients are
        clipped (unscaled first) when ``optim.clip_grad_norm`` is set."""
        state = self.state
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        if self.cfg.optim.clip_grad_norm is not None:
            state.scaler.unscale_(state.optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(state.model.parameters(), self.cfg.optim.clip_grad_norm)
        state.scaler.step(state.optimizer)
        state.scaler.update()

    # ------------------------------------------------------------------ checkpoints
    def save(self, epoch: int, metrics: dict[str, Any], best_path: Path | None = None) -> None:
        """The resumable checkpoint (and the weights alone to ``best_path``), written by the main
        process with every process's RNG state."""
        state, dist = self.state, self.dist
        check_finite_weights(state.bare, epoch, self.checkpoint_path)
        rng = all_gather_objects(capture_rng_state())  # every rank's, so each resumes its own
        if dist.is_main:
            common = {"arch": self.arch(), "model": state.bare.state_dict(), "epoch": epoch,
                      "config": to_dict(self.cfg), "amp_dtype": str(state.amp_dtype),
                      "metrics": {k: float(v) for k, v in metrics.items()},
                      **self.checkpoint_extra()}
            if best_path is not None:
                atomic_save(common, best_path)
            full = {**common, "optimizer": state.optimizer.state_dict(),
                    "scaler": state.scaler.state_dict(),
                    "world_size": dist.world_size, "iters_per_epoch": self.iters, "rng": rng}
            if state.scheduler is not None:
                full["scheduler"] = state.scheduler.state_dict()
            atomic_save(full, self.checkpoint_path)
        barrier()

    def resume(self, path: str | Path) -> dict[str, Any]:
        """Restore the state saved in ``path`` (refused if it is another architecture); returns
        the checkpoint for the subclass's own checks."""
        path, state, dist = Path(path), self.state, self.dist
        ckpt = self.upgrade_checkpoint(load_checkpoint(path))
        check_arch(ckpt, self.arch(), path)
        changed = [d for d in arch_mismatch(ckpt.get("config", {}), to_dict(self.cfg))
                   if not d.startswith(RUN_CONTROL_KEYS)]
        if changed:
            log.warning("resuming %s with a changed config:\n  %s", path, "\n  ".join(changed))
        load_model_state(state.bare, ckpt["model"], str(path))
        self.restore_extra(ckpt, path)
        try:
            state.optimizer.load_state_dict(ckpt["optimizer"])
            state.scaler.load_state_dict(ckpt["scaler"])
            if state.scheduler is not None:
                state.scheduler.load_state_dict(ckpt["scheduler"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot restore the training state "
                                  f"({type(err).__name__}: {err})") from err
        state.start_epoch = int(ckpt["epoch"]) + 1
        if ckpt.get("world_size") == dist.world_size and ckpt.get("iters_per_epoch") == self.iters:
            restore_rng_state(ckpt["rng"][dist.rank])
        else:
            log.warning("checkpoint written by %s process(es) with %s iterations per epoch, this "
                        "run has %d and "
                        "%d: it continues, but not bit for bit as the original run would have",
                        ckpt.get("world_size"), ckpt.get("iters_per_epoch"), dist.world_size,
                        self.iters)
            seed_everything(self.cfg.seed + 1000 * state.start_epoch, dist.rank)
            if state.scheduler is not None:  # the schedule counts iterations: move it to this run's
                state.scheduler.last_epoch = state.start_epoch * self.iters - 1
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    state.scheduler.step()
        log.info("resumed from %s: %d epoch(s) done", path, state.start_epoch)
        return ckpt

    # ------------------------------------------------------------------ the loop
    def run_epochs(self) -> dict[str, float]:
        """Epochs ``start_epoch`` .. ``optim.epochs`` (or ``stop_after_epoch``): train, evaluate,
        write the metrics, save. Returns the metrics of the last epoch run."""
        cfg, state = self.cfg, self.state
        epochs = cfg.optim.epochs
        last = epochs if cfg.stop_after_epoch is None else min(epochs, cfg.stop_after_epoch)
        metrics: dict[str, float] = {}
        with MetricsWriter(self.output_dir, enabled=self.dist.is_main,
                           purge_step=state.start_epoch * self.iters,
                           tensorboard=cfg.tensorboard) as writer:
            for epoch in range(state.start_epoch, last):
                self.before_epoch(epoch)
                metrics = self.train_epoch(epoch, writer)
                best_path = self.after_epoch(epoch, metrics)
                writer.write((epoch + 1) * self.iters - 1, metrics, epoch=epoch + 1)
                log.info("epoch %d/%d: %s", epoch + 1, epochs,
                         ", ".join(f"{k} {v:.4g}" for k,
                                   v in metrics.items() if not k.startswith("time/")))
                self.save(epoch, metrics, best_path)
        if last < epochs:
            log.info("stopped after epoch %d of %d (stop_after_epoch); continue with --resume",
                     last, epochs)
        else:
            self.finished(last)
        self.release_run_lock()
        return metrics

    def release_run_lock(self) -> None:
        """Let the output folder's lock go (taken by :meth:`start`)."""
        lock = getattr(self, "run_lock", None)
        if lock is not None:
            lock.release()
