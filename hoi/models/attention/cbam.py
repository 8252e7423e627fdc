"""Convolutional Block Attention Module (CBAM).

Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018. Channel attention
(a shared MLP over average- and max-pooled descriptors) followed by spatial attention
(a 7x7 convolution over channel-wise average and max maps), both as sigmoid rescaling.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from hoi.models.attention.base import AttentionBlock, check_feature_map


class CBAM(AttentionBlock):
    """CBAM block. Shapes: (B, C, H, W) -> (B, C, H, W).

    Args:
        channels: C, channels of the input map.
        reduction: r, bottleneck ratio of the channel MLP (16 in the CBAM paper).
        kernel_size: size of the spatial-attention convolution (7 in the CBAM paper).
    """

    default_position: ClassVar[str] = "after_conv3"
    default_reduction: ClassVar[int] = 16

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"CBAM reduction ratio must be >= 1, got {reduction}")
        self.channels = channels
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, type(self).__name__)
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        x = x * (avg + mx).sigmoid()
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.spatial(pooled).sigmoid()
