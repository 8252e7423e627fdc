"""Attention blocks that plug into a ResNet bottleneck, chosen by name.

``ATTENTION_BLOCKS`` maps a config string to a class whose constructor takes the number of
channels first and ``reduction`` as a keyword; ``create_attention`` builds one.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from hoi.models.attention.cbam import CBAM
from hoi.models.attention.gc import GlobalContext
from hoi.models.attention.sac import SpatiallyAwareContext
from hoi.models.attention.se import SqueezeExcite

ATTENTION_BLOCKS: dict[str, type[nn.Module]] = {
    "sac": SpatiallyAwareContext,
    "gc": GlobalContext,
    "se": SqueezeExcite,
    "cbam": CBAM,
}


def create_attention(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """Build the attention block ``name`` for a map of ``channels`` channels."""
    try:
        cls = ATTENTION_BLOCKS[name]
    except KeyError:
        valid = ", ".join(sorted(ATTENTION_BLOCKS))
        raise ValueError(f"unknown attention block {name!r}; valid names: {valid}") from None
    return cls(channels, **kwargs)


__all__ = [
    "ATTENTION_BLOCKS",
    "CBAM",
    "GlobalContext",
    "SpatiallyAwareContext",
    "SqueezeExcite",
    "create_attention",
]
