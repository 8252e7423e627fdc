"""Non-finite values of a training step, flagged on the device and read rarely.

A step that reads ``torch.isfinite(loss).item()`` waits for the GPU every iteration. Here every
step only ORs its flags into a device tensor; :meth:`FiniteWatch.check` reads them (one host
synchronisation) every ``log_every`` steps and at the end of the epoch, and stops the run with a
one-line :class:`~hoi.errors.NonFiniteError` naming what went non-finite and the first
iteration it did. Weights touched by a non-finite step are never saved: the check runs before
the epoch's checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from hoi.errors import NonFiniteError


class FiniteWatch:
    """Flags of named values (logits, loss, ...) that were not all finite, and the first
    iteration (0-based) any was."""

    def __init__(self, device: torch.device, last_good: str | Path | None = None) -> None:
        self.names: list[str] = []
        self.flags = torch.zeros(0, dtype=torch.bool, device=device)
        self.first = torch.full((), -1, dtype=torch.int64, device=device)
        self.last_good = last_good  # the checkpoint a user may resume from (named in the error)

    def update_named(self, values: Mapping[str, torch.Tensor], it: int) -> None:
        """Flag the non-finite ``values`` of iteration ``it``; the names must be the same at
        every call."""
        if not self.names:
            self.names = list(values)
            self.flags = torch.zeros(len(self.names), dtype=torch.bool,
                                     device=self.first.device)
        bad = torch.stack([~torch.isfinite(x.detach()).all() for x in values.values()])
        self.first = torch.where((self.first < 0) & bad.any(), it, self.first)
        self.flags |= bad

    def update(self, outputs: Mapping[str, torch.Tensor], loss: torch.Tensor, it: int) -> None:
        """Flag non-finite head ``outputs`` (named "<name> logits") or ``loss``."""
        self.update_named({**{f"{name} logits": x for name, x in outputs.items()}, "loss": loss},
                          it)

    def check(self, epoch: int, iters: int) -> None:
        """Raise NonFiniteError (one line at the command line) if a flagged value was
        non-finite."""
        if not self.names or not bool(self.flags.any()):
            return
        bad = [name for name, flag in zip(self.names, self.flags.tolist()) if flag]
        good = self.last_good is not None and Path(self.last_good).exists()
        resume = f"resume from {self.last_good}" if good else "start again"
        raise NonFiniteError(
            f"non-finite {', '.join(bad)} at epoch {epoch + 1}, iteration "
            f"{int(self.first) + 1}/{iters}: stopping (lower optim.lr, then {resume}; the "
            "weights of this epoch are not saved)")
