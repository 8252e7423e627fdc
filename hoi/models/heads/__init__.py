"""Interaction heads on cached backbone maps, chosen by ``model.name`` from :data:`HEADS`.

A head is an :class:`~hoi.models.heads.base.InteractionHead` with its own ``Config``; training,
testing and inference only use that interface. Adding one is a file plus a line here (or a
``HEADS.register(...)`` call): see docs/architecture.md.
"""

from __future__ import annotations

from hoi.models.heads.base import HeadConfig, InteractionHead
from hoi.models.heads.vsgnet import VSGNet
from hoi.registry import Table

HEADS: Table[type[InteractionHead]] = Table("model.name", {"vsgnet": VSGNet})


def build_head(cfg: HeadConfig) -> InteractionHead:
    """The head that ``cfg.name`` names, built from ``cfg`` (random init)."""
    return HEADS[cfg.name](cfg)


__all__ = ["HEADS", "HeadConfig", "InteractionHead", "build_head"]
