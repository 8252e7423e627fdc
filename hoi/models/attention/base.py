"""What every attention block shares: its defaults as class attributes, and the input checks.

A block is an ``nn.Module`` mapping a (B, C, H, W) map to a (B, C, H, W) map, built as
``Block(channels, reduction=r, **options)``. Its class says where it goes in a bottleneck
when the config leaves ``attention.position: auto``, its reduction ratio when
``attention.reduction`` is unset, and which extra options it takes (``Options``, filled from
``attention.options`` and checked against that dataclass). A new block is one file with such a
class plus one line ``ATTENTION_BLOCKS.register("name", Block)`` (:mod:`hoi.models.attention`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class NoOptions:
    """The options of a block that takes none (and of ``attention.type: none``)."""


class AttentionBlock(nn.Module):
    """Base class of the attention blocks: subclasses set the class attributes below.

    Attributes:
        default_position: ``"after_conv2"`` (on the bottleneck's width, after the 3x3 conv) or
            ``"after_conv3"`` (on its output channels, before the residual addition).
        default_reduction: the reduction ratio of the block's paper.
        Options: a dataclass of the extra keyword options of the constructor (defaults
            included); :class:`NoOptions` unless the block has some.
    """

    default_position: ClassVar[str]
    default_reduction: ClassVar[int]
    Options: ClassVar[type] = NoOptions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Fail where the block is defined, not later with a KeyError while building a network.
        missing = [a for a in ("default_position", "default_reduction") if not hasattr(cls, a)]
        if missing:
            raise TypeError(f"attention block {cls.__name__} must set {', '.join(missing)}")

    @classmethod
    def as_written(cls, options: dict[str, Any]) -> dict[str, Any] | None:
        """The options under which the block computes its paper's equations in their written
        order, when they differ from ``options`` (a cheaper but equal rewrite is in use); None
        otherwise. :func:`hoi.models.complexity.measure` counts both."""
        return None


def check_feature_map(x: torch.Tensor, channels: int, name: str) -> None:
    """Raise a ValueError unless ``x`` is a (B, channels, H, W) tensor."""
    if x.dim() != 4:
        raise ValueError(
            f"{name} expects a 4-d feature map (B, C, H, W), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"{name} was built for {channels} channels, got an input with {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )
