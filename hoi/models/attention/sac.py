"""Spatially-Aware Context (SAC) block.

Ruan et al., "Spatially-Aware Context Neural Networks", IEEE TIP 2021 (Sec. III-B, Eq. 2-5).

For an input X in R^{C x N} (N = H*W) and K = max(1, C // l) contexts:

    alpha = softmax_N(W_phi^T X)        K x N    multi-mode context aggregation (Eq. 2)
    mu    = alpha X^T                   K x C    contextual basis            (Eq. 3)
    beta  = W_theta^T X                 K x N    NOT normalised by default   (Eq. 4)
    Y     = mu^T beta                   C x N    spatially-aware context     (Eq. 4)
    Z     = X + W_rho Y                 C x N    feature transform + fusion  (Eq. 5)

W_phi, W_theta and W_rho are 1x1 convolutions; no normalisation layer and no activation.
Because everything after mu is linear, W_rho Y = (W_rho mu^T) beta: the "cheap" order costs
C*C*K + C*K*N multiply-adds instead of the C*C*N of the written ("paper") order and gives the
same Z. Neither order ever materialises an N x N matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from hoi.models.attention.base import AttentionBlock, check_feature_map
from hoi.registry import Table

ComputeOrder = Literal["cheap", "paper"]


def _fuse_cheap(rho: nn.Conv2d, x: torch.Tensor, flat: torch.Tensor, mu: torch.Tensor,
                beta: torch.Tensor) -> torch.Tensor:
    """Z = X + (W_rho mu^T) beta + b_rho. x (B, C, H, W), flat (B, C, N), mu (B, K, C),
    beta (B, K, N) -> (B, C, H, W)."""
    b, c, h, w = x.shape
    mixed = torch.matmul(rho.weight.view(c, c), mu.transpose(1, 2))  # B, C, K
    # Fold b_rho into the product as a (K+1)-th context whose weight is 1 everywhere,
    # so that Z = X + (W_rho mu^T) beta + b_rho is one pass over the C x N output.
    mixed = torch.cat([mixed, rho.bias.view(1, c, 1).expand(b, c, 1)], dim=2)
    beta1 = torch.cat([beta, beta.new_ones(b, 1, h * w)], dim=1)
    return torch.baddbmm(flat, mixed, beta1).view(b, c, h, w)


def _fuse_paper(rho: nn.Conv2d, x: torch.Tensor, flat: torch.Tensor, mu: torch.Tensor,
                beta: torch.Tensor) -> torch.Tensor:
    """Z = X + W_rho (mu^T beta), Eq. 4-5 as written; same shapes as :func:`_fuse_cheap`."""
    b, c, h, w = x.shape
    context = torch.bmm(mu.transpose(1, 2), beta)  # B, C, N: Y of Eq. 4
    return x + rho(context.view(b, c, h, w))  # Eq. 5 as written


Fuse = Callable[[nn.Conv2d, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
COMPUTE_ORDERS: Table[Fuse] = Table(
    "attention.options.order", {"cheap": _fuse_cheap, "paper": _fuse_paper}
)


@dataclass
class SACOptions:
    """SAC's options (``attention.options`` of a SAC backbone)."""

    softmax_beta: bool = False  # Table II ablation: true
    order: str = "cheap"  # cheap: (W_rho mu^T) beta; paper: Eq. 5 as written, same output

    def __post_init__(self) -> None:
        COMPUTE_ORDERS.check(self.order)


class SpatiallyAwareContext(AttentionBlock):
    """SAC block: ``Z = X + W_rho (mu^T beta)``.

    Args:
        channels: C, channels of the input map.
        reduction: l, the reduction ratio; the block learns K = max(1, C // l) contexts.
        softmax_beta: normalise beta with a softmax over the K contexts (Table II ablation;
            the paper's default is without).
        order: ``"cheap"`` computes ``(W_rho mu^T) beta`` (default), ``"paper"`` computes
            ``W_rho (mu^T beta)`` as written in Eq. 5. Same output up to float rounding.

    Shapes: input (B, C, H, W) -> output (B, C, H, W). After each forward, ``last_alpha``
    (B, K, H, W) and ``last_beta`` (B, K, H, W) hold the detached attention maps.
    """

    default_position: ClassVar[str] = "after_conv2"
    default_reduction: ClassVar[int] = 32
    Options: ClassVar[type] = SACOptions

    def __init__(
        self,
        channels: int,
        reduction: int = 32,
        *,
        softmax_beta: bool = False,
        order: ComputeOrder = "cheap",
    ) -> None:
        super().__init__()
        SACOptions(softmax_beta, order)  # ConfigError naming attention.options.order if unknown
        if reduction < 1:
            raise ValueError(f"SAC reduction ratio must be >= 1, got {reduction}")
        self.channels = channels
        self.num_contexts = max(1, channels // reduction)
        self.softmax_beta = softmax_beta
        self.order: ComputeOrder = order
        self.phi = nn.Conv2d(channels, self.num_contexts, kernel_size=1)
        self.theta = nn.Conv2d(channels, self.num_contexts, kernel_size=1)
        self.rho = nn.Conv2d(channels, channels, kernel_size=1)
        self.last_alpha: torch.Tensor | None = None
        self.last_beta: torch.Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.phi.weight, mode="fan_in")
        nn.init.kaiming_normal_(self.theta.weight, mode="fan_in")
        nn.init.zeros_(self.phi.bias)
        nn.init.zeros_(self.theta.bias)
        # Zero W_rho: the block starts as the identity, so a network built from plain
        # pretrained weights reproduces them exactly before training.
        nn.init.zeros_(self.rho.weight)
        nn.init.zeros_(self.rho.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, type(self).__name__)
        b, c, h, w = x.shape
        k = self.num_contexts
        flat = x.flatten(2)  # B, C, N
        # W_phi and W_theta read X in one matrix product (1x1 convs with few outputs are slow).
        w_in = torch.cat([self.phi.weight, self.theta.weight]).view(2 * k, c)
        b_in = torch.cat([self.phi.bias, self.theta.bias]).view(1, 2 * k, 1)
        logits, beta = torch.baddbmm(b_in, w_in.expand(b, -1, -1), flat).split(k, dim=1)
        alpha = logits.softmax(dim=-1)  # B, K, N                         (Eq. 2)
        mu = torch.bmm(alpha, flat.transpose(1, 2))  # B, K, C             (Eq. 3)
        if self.softmax_beta:
            beta = beta.softmax(dim=1)
        self.last_alpha = alpha.detach().view(b, k, h, w)
        self.last_beta = beta.detach().view(b, k, h, w)
        return COMPUTE_ORDERS[self.order](self.rho, x, flat, mu, beta)  # Eq. 4-5

    @classmethod
    def as_written(cls, options: dict[str, Any]) -> dict[str, Any] | None:
        """``order=paper`` unless ``options`` already computes Eq. 5 in the written order."""
        return None if options.get("order") == "paper" else {**options, "order": "paper"}

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, contexts={self.num_contexts}, "
            f"softmax_beta={self.softmax_beta}, order={self.order!r}"
        )
