"""Global Context (GC) block.

Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
ICCVW 2019. Context modelling by attention pooling (one 1x1 conv + softmax over positions),
a bottleneck transform conv(C -> C/r) - LayerNorm - ReLU - conv(C/r -> C) and additive
fusion: the same context vector is added to every position.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from hoi.models.attention.base import AttentionBlock, check_feature_map


class GlobalContext(AttentionBlock):
    """GC block with attention pooling and additive fusion.

    Args:
        channels: C, channels of the input map.
        reduction: r, bottleneck ratio of the transform (the paper's 1/16 is ``16``).

    Shapes: (B, C, H, W) -> (B, C, H, W). ``last_alpha`` (B, 1, H, W) holds the attention
    map of the last forward.
    """

    default_position: ClassVar[str] = "after_conv3"
    default_reduction: ClassVar[int] = 16

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"GC reduction ratio must be >= 1, got {reduction}")
        self.channels = channels
        hidden = max(1, channels // reduction)
        self.conv_mask = nn.Conv2d(channels, 1, kernel_size=1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.LayerNorm([hidden, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )
        self.last_alpha: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in")
        nn.init.zeros_(self.conv_mask.bias)
        nn.init.kaiming_normal_(self.transform[0].weight, mode="fan_in")
        nn.init.zeros_(self.transform[0].bias)
        # Zero the last conv (weight and bias): the block starts as the identity.
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, type(self).__name__)
        b, c, h, w = x.shape
        alpha = self.conv_mask(x).view(b, 1, h * w).softmax(dim=-1)  # B, 1, N
        self.last_alpha = alpha.detach().view(b, 1, h, w)
        context = torch.bmm(x.flatten(2), alpha.transpose(1, 2))  # B, C, 1
        return x + self.transform(context.view(b, c, 1, 1))
