"""What training, testing and inference need from an interaction head, and nothing more.

An interaction head scores the human-object pairs of a batch from :func:`hoi.inputs.dataset.collate`
(cached feature maps, proposals, pairs). The run never names a head: it builds the one that
``model.name`` picks from :data:`hoi.models.heads.HEADS` and talks to it through this interface
(see docs/architecture.md#adding-an-interaction-head):

- ``forward(batch)`` -> a mapping of named logits (checked for non-finite values by name);
- ``log_scores(outputs, batch)`` -> ``(log p (P, V), valid (P, V))``: the log of each pair's
  final verb scores and which verbs its object class allows (inference and the loss use both);
- ``loss(outputs, batch)`` -> the summed training loss of the batch (the run normalises it);
- ``param_groups(lr)`` -> the optimiser's parameter groups; a group with ``scheduled: False``
  keeps its own rate through the learning-rate schedule;
- ``Config``: the dataclass of its ``model.*`` keys (a subclass of :class:`HeadConfig`), and
  ``training_keys``: those of its keys that change how it trains, not what its weights mean
  (left out of the architecture record that checkpoints are checked against).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from hoi.config import AT_LEAST_ONE, Check, to_dict


@dataclass
class HeadConfig:
    """The ``model.*`` keys every head has. A head's ``Config`` declares the range of each of its
    numeric keys in its own ``RANGES`` (merged with these; :class:`hoi.config.Check`)."""

    RANGES: ClassVar[dict[str, Check]] = {"in_channels": AT_LEAST_ONE}

    name: str = "vsgnet"  # the head (hoi.models.heads.HEADS)
    in_channels: int = 1024  # channels of the cached map (layer3 of a ResNet)


class InteractionHead(nn.Module):
    """Base class of the heads of :data:`hoi.models.heads.HEADS`."""

    Config: ClassVar[type[HeadConfig]] = HeadConfig
    training_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        raise NotImplementedError

    def log_scores(self, outputs: Mapping[str, torch.Tensor],
                   batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p (P, V) float32, all < 0; valid (P, V) bool) of the P pairs of ``batch``."""
        raise NotImplementedError

    def loss(self, outputs: Mapping[str, torch.Tensor],
             batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The summed loss of the batch's pairs against ``batch["labels"]`` (P, V)."""
        raise NotImplementedError

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Parameter groups for the optimiser: ``name``, ``params``, ``lr`` and ``scheduled``
        (whether the run's schedule multiplies the rate). Default: one scheduled group."""
        return [{"name": "main", "params": list(self.parameters()), "lr": lr, "scheduled": True}]

    @classmethod
    def validate(cls, cfg: HeadConfig) -> None:
        """Raise ConfigError naming the first ``model.*`` value the head cannot take (called when
        the run config is loaded, before any work)."""

    @classmethod
    def arch_record(cls, cfg: HeadConfig) -> dict[str, Any]:
        """The keys that decide what the weights mean (checked when a checkpoint is loaded)."""
        record = to_dict(cfg)
        for key in ("name", *cls.training_keys):
            record.pop(key, None)
        return record
