"""Squeeze-and-Excitation (SE) block.

Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018. Global average pooling, a
bottleneck MLP (C -> C/r -> C, ReLU then sigmoid) and channel-wise rescaling.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from hoi.models.attention.base import AttentionBlock, check_feature_map


class SqueezeExcite(AttentionBlock):
    """SE block. Shapes: (B, C, H, W) -> (B, C, H, W).

    Args:
        channels: C, channels of the input map.
        reduction: r, bottleneck ratio (16 in the SE paper).

    Unlike the additive blocks, SE rescales its input and so cannot start as the identity;
    it is trained from scratch with the network, as in the SE paper.
    """

    default_position: ClassVar[str] = "after_conv3"
    default_reduction: ClassVar[int] = 16

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"SE reduction ratio must be >= 1, got {reduction}")
        self.channels = channels
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, type(self).__name__)
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.fc2(torch.relu(self.fc1(scale)))
        return x * scale.sigmoid()
