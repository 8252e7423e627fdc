"""Shared input checks for the attention blocks."""

from __future__ import annotations

import torch


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
