"""Attention blocks that plug into a ResNet bottleneck, chosen by name (``attention.type``).

``ATTENTION_BLOCKS`` maps a config string to an :class:`AttentionBlock` class (``none`` to no
block); a class is built as ``Block(channels, reduction=r, **options)`` and carries its own
defaults (see :mod:`hoi.models.attention.base`). Adding a block is one file plus one line:

    ATTENTION_BLOCKS.register("toy", ToyBlock)
"""

from __future__ import annotations

from typing import Any

from hoi.config import ConfigError
from hoi.models.attention.base import AttentionBlock, NoOptions
from hoi.models.attention.cbam import CBAM
from hoi.models.attention.gc import GlobalContext
from hoi.models.attention.sac import SpatiallyAwareContext
from hoi.models.attention.se import SqueezeExcite
from hoi.registry import Table

ATTENTION_BLOCKS: Table[type[AttentionBlock] | None] = Table(
    "attention.type",
    {
        "none": None,
        "sac": SpatiallyAwareContext,
        "gc": GlobalContext,
        "se": SqueezeExcite,
        "cbam": CBAM,
    },
)


def attention_classes() -> tuple[type[AttentionBlock], ...]:
    """The classes of the registered blocks, read now (so that later registrations count)."""
    return tuple(cls for cls in ATTENTION_BLOCKS.values() if cls is not None)


def create_attention(name: str, channels: int, **kwargs: Any) -> AttentionBlock:
    """Build the attention block ``name`` for a map of ``channels`` channels.

    ``kwargs``: ``reduction`` and the block's options. ConfigError for an unknown name (listing
    the valid ones) and for ``none``, which builds no block.
    """
    cls = ATTENTION_BLOCKS[name]
    if cls is None:
        raise ConfigError(f"{ATTENTION_BLOCKS.key}: {name!r} builds no attention block")
    return cls(channels, **kwargs)


__all__ = [
    "ATTENTION_BLOCKS",
    "CBAM",
    "AttentionBlock",
    "GlobalContext",
    "NoOptions",
    "SpatiallyAwareContext",
    "SqueezeExcite",
    "attention_classes",
    "create_attention",
]
