"""The VSGNet interaction heads (Ulutan et al., "VSGNet: Spatial Attention Network for
Detecting Human Object Interactions Using Graph Convolutions", CVPR 2020), as the official
code builds them (ASMIftekhar/VSGNet, scripts_hico/model.py), on a cached backbone feature map.

Per box, the official crop + max pool (or RoIAlign, ``roi_pool``) on the map and a residual block
of 1x1 convolutions give f_h / f_o; the same block over the whole map gives the context f_C.
A pair is [f_h, f_o, s_ho, f_C] (s_ho and the two-box map: :mod:`hoi.models.heads.pair_spatial`,
the official code's by default). Three
heads score it: the visual branch and the interaction proposal (both gated by the spatial
attention a_ho of the pair's two-box map), and the graph branch on features refined over the
image's human-object graph whose edges are the interaction proposals. The final score of verb
v is the product of four sigmoids, LIS of the two detection scores and the object -> verb mask;
it is computed, and trained, in log space.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hoi.config import AT_LEAST_ONE, FINITE, POSITIVE, Check
from hoi.data.metadata import NUM_OBJECTS, NUM_VERBS, hico_metadata
from hoi.models.heads.base import HeadConfig, InteractionHead
from hoi.models.heads.pair_spatial import INTERACTION_MAPS, PAIR_GEOMETRIES
from hoi.models.heads.roi import ROI_POOLS

GEOMETRY_DIM = 4


@dataclass
class VSGNetConfig(HeadConfig):
    RANGES: ClassVar[dict[str, Check]] = {
        "spatial_lr": Check(ge=0, why="0 freezes the spatial-attention branch"),
        "block_channels": AT_LEAST_ONE, "roi_size": AT_LEAST_ONE,
        "roi_sampling_ratio": Check(ge=0, why="0: adaptive"),
        "head_hidden": AT_LEAST_ONE, "head_channels": AT_LEAST_ONE,
        "spatial_size": AT_LEAST_ONE, "spatial_value": POSITIVE,
        "spatial_channels": AT_LEAST_ONE, "spatial_kernel": AT_LEAST_ONE,
        "spatial_pool": AT_LEAST_ONE, "num_verbs": AT_LEAST_ONE, "num_objects": AT_LEAST_ONE,
        "lis_t": POSITIVE, "lis_k": FINITE, "lis_w": POSITIVE,
        "bn_eps": POSITIVE, "bn_momentum": Check(ge=0, le=1),
        "max_log_score": Check(lt=0, why="log p is clamped below it so that log(1 - p) is finite"),
    }

    spatial_lr: float = 0.001  # the spatial-attention branch's rate, outside the lr schedule
    block_channels: int = 512  # inner width of the residual 1x1 blocks
    roi_pool: str = "official"  # hoi.models.heads.roi.ROI_POOLS: official (crop + max pool) | align
    roi_size: int = 10  # pooled box features are roi_size x roi_size
    roi_sampling_ratio: int = 2  # RoIAlign only: samples per bin side (0: adaptive)
    head_hidden: int = 1024  # first Linear of each head
    head_channels: int = 512  # second Linear of each head = attention width
    # hoi.models.heads.pair_spatial: official (the official code's cells) | pixel
    interaction_map: str = "official"
    pair_geometry: str = "official"
    spatial_size: int = 64  # the two-box map is spatial_size x spatial_size
    spatial_value: float = 100.0  # value inside a box on that map (official code: 100)
    spatial_channels: list[int] = field(default_factory=lambda: [64, 32])
    spatial_kernel: int = 5
    spatial_pool: int = 2  # max-pool after each conv of the attention branch
    num_verbs: int = NUM_VERBS
    num_objects: int = NUM_OBJECTS
    lis: bool = True  # weight the score by LIS of the detection scores
    lis_t: float = 8.3  # LIS(x) = t / (1 + exp(k - w x))
    lis_k: float = 12.0
    lis_w: float = 10.0
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    max_log_score: float = -1e-6  # log p is clamped below this, so log(1 - p) stays finite


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        import torch.distributed as dist

        out = grad.clone()
        dist.all_reduce(out)
        return out


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the whole distributed batch.

    torch.nn.SyncBatchNorm runs on GPUs only; this one reduces (count, sum, sum of squares)
    with an autograd-aware all-reduce on any backend, so a run on k processes normalises as
    one process with the same total batch does. Without a process group it is BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        n = xf.new_full((1,), xf.numel() / xf.shape[1])  # a fill on the device, no copy
        stats = torch.cat([n, xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3))])
        stats = _AllReduceSum.apply(stats)
        c = x.shape[1]
        count = stats[0]
        mean = stats[1:1 + c] / count
        var = (stats[1 + c:] / count - mean * mean).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        y = (xf - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


class ResidualBlock(nn.Module):
    """x + ReLU(BN(conv1x1(BN(conv1x1(BN(conv1x1(x))))))): channels -> width -> width ->
    channels."""

    def __init__(self, channels: int, width: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        bn = lambda c: GroupBatchNorm2d(c, eps=eps, momentum=momentum)  # noqa: E731
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False), bn(width),
            nn.Conv2d(width, width, 1, bias=False), bn(width),
            nn.Conv2d(width, channels, 1, bias=False), bn(channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> (N, C, h, w)."""
        return x + self.body(x)


def head(in_features: int, hidden: int, out: int) -> nn.Sequential:
    """Linear -> Linear -> ReLU (no non-linearity between the two, as in the official code)."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.Linear(hidden, out), nn.ReLU())


class SpatialAttention(nn.Module):
    """The two-box map (P, 2, S, S) -> attention a_ho (P, head_channels)."""

    def __init__(self, cfg: VSGNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 2
        for c_out in cfg.spatial_channels:
            layers += [nn.Conv2d(c_in, c_out, cfg.spatial_kernel), nn.MaxPool2d(cfg.spatial_pool)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.up = nn.Sequential(nn.Linear(c_in, cfg.head_channels), nn.ReLU())

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # global average: for S = 64 this is the official 13 x 13 average pool
        return self.up(self.convs(maps).mean(dim=(2, 3)))


@dataclass
class VSGNetOutput(Mapping[str, torch.Tensor]):
    """Logits of the P pairs of a batch: ``visual``, ``graph``, ``attention`` (P, V) and
    ``interaction`` (P,); a read-only mapping from those names."""

    visual: torch.Tensor
    graph: torch.Tensor
    attention: torch.Tensor
    interaction: torch.Tensor

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


class VSGNet(InteractionHead):
    """The VSGNet heads on a batch from :func:`hoi.inputs.dataset.collate`.

    The spatial-attention branch (``spatial.*``) trains at ``spatial_lr``, outside the schedule.
    """

    Config = VSGNetConfig
    training_keys = ("spatial_lr",)

    @classmethod
    def validate(cls, cfg: VSGNetConfig) -> None:
        ROI_POOLS.check(cfg.roi_pool)
        INTERACTION_MAPS.check(cfg.interaction_map)
        PAIR_GEOMETRIES.check(cfg.pair_geometry)

    def __init__(self, cfg: VSGNetConfig) -> None:
        super().__init__(cfg)
        self.validate(cfg)
        c, w = cfg.in_channels, cfg.block_channels
        self.human_block = ResidualBlock(c, w, cfg.bn_eps, cfg.bn_momentum)
        self.object_block = ResidualBlock(c, w, cfg.bn_eps, cfg.bn_momentum)
        self.context_block = ResidualBlock(c, w, cfg.bn_eps, cfg.bn_momentum)
        self.spatial = SpatialAttention(cfg)
        self.spatial_tail = nn.Linear(cfg.head_channels, cfg.num_verbs)
        pair_dim = 3 * c + GEOMETRY_DIM
        self.visual_head = head(pair_dim, cfg.head_hidden, cfg.head_channels)
        self.visual_tail = nn.Linear(cfg.head_channels, cfg.num_verbs)
        self.interaction_head = head(pair_dim, cfg.head_hidden, cfg.head_channels)
        self.interaction_tail = nn.Linear(cfg.head_channels, 1)
        self.object_to_human = nn.Sequential(nn.Linear(c, c), nn.ReLU())
        self.human_to_object = nn.Sequential(nn.Linear(c, c), nn.ReLU())
        self.graph_head = head(2 * c, cfg.head_hidden, cfg.head_channels)
        self.graph_tail = nn.Linear(cfg.head_channels, cfg.num_verbs)
        mask = torch.zeros(cfg.num_objects, cfg.num_verbs, dtype=torch.bool)
        meta = hico_metadata()
        if (cfg.num_objects, cfg.num_verbs) == meta.object_verb_mask.shape:
            mask = torch.from_numpy(meta.object_verb_mask.copy())
        self.register_buffer("object_verb_mask", mask, persistent=False)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Every parameter but the spatial-attention branch at the scheduled ``lr``; the branch
        (conv stack and its up-projection) at ``spatial_lr``, never multiplied."""
        spatial = list(self.spatial.parameters())
        ids = {id(p) for p in spatial}
        main = [p for p in self.parameters() if id(p) not in ids]
        return [{"name": "main", "params": main, "lr": lr, "scheduled": True},
                {"name": "spatial", "params": spatial, "lr": self.cfg.spatial_lr,
                 "scheduled": False}]

    def _roi_features(self, fmap: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor,
                      image_size: torch.Tensor, block: ResidualBlock) -> torch.Tensor:
        """Boxes (K, 4) in original pixels of images ``image`` (K,) -> (K, C) pooled features."""
        if boxes.shape[0] == 0:
            return fmap.new_zeros((0, fmap.shape[1]))
        pool = ROI_POOLS[self.cfg.roi_pool]
        pooled = pool(fmap, boxes, image, image_size, self.cfg.roi_size,
                      self.cfg.roi_sampling_ratio)
        return block(pooled.to(fmap.dtype)).mean(dim=(2, 3))

    def forward(self, batch: dict[str, torch.Tensor]) -> VSGNetOutput:
        """Logits of every pair of the batch (keys as :func:`collate` makes them)."""
        fmap = batch["features"].float()  # stored as float16; cast on the device
        size = batch["image_size"]
        f_h = self._roi_features(fmap, batch["boxes_h"], batch["image_h"], size, self.human_block)
        f_o = self._roi_features(fmap, batch["boxes_o"], batch["image_o"], size, self.object_block)
        f_c = self.context_block(fmap).mean(dim=(2, 3))
        ph, po, pi = batch["pair_h"], batch["pair_o"], batch["pair_image"]
        box_h, box_o = batch["boxes_h"][ph], batch["boxes_o"][po]
        geometry = PAIR_GEOMETRIES[self.cfg.pair_geometry](
            box_h, box_o, size[pi], (fmap.shape[2], fmap.shape[3])).to(f_h.dtype)
        maps = INTERACTION_MAPS[self.cfg.interaction_map](
            box_h, box_o, size[pi], self.cfg.spatial_size, self.cfg.spatial_value, fmap.dtype)
        a_ho = self.spatial(maps)
        pair = torch.cat([f_h[ph], f_o[po], geometry, f_c[pi]], dim=1)

        visual = self.visual_tail(self.visual_head(pair) * a_ho)
        interaction = self.interaction_tail(self.interaction_head(pair) * a_ho).squeeze(1)
        # graph: A[h, o] = i_ho over the pairs of each image (pairs never cross images)
        adj = torch.sigmoid(interaction)[:, None]
        msg_h = (adj * self.object_to_human(f_o)[po]).to(f_h.dtype)
        msg_o = (adj * self.human_to_object(f_h)[ph]).to(f_o.dtype)
        g_h = f_h.index_add(0, ph, msg_h)
        g_o = f_o.index_add(0, po, msg_o)
        graph = self.graph_tail(self.graph_head(torch.cat([g_h[ph], g_o[po]], dim=1)) * a_ho)
        attention = self.spatial_tail(a_ho)
        return VSGNetOutput(visual, graph, attention, interaction)

    def log_lis(self, scores: torch.Tensor) -> torch.Tensor:
        """log LIS(x) = log t + log sigmoid(w x - k), for scores (N,)."""
        c = self.cfg
        return math.log(c.lis_t) + F.logsigmoid(c.lis_w * scores - c.lis_k)

    def log_scores(self, out: Mapping[str, torch.Tensor],
                   batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p (P, V) float32 clamped at ``max_log_score``, valid (P, V) bool): the log of
        the final verb scores and the object -> verb mask of each pair's object class."""
        ph, po = batch["pair_h"], batch["pair_o"]
        log_p = (F.logsigmoid(out["visual"].float()) + F.logsigmoid(out["graph"].float())
                 + F.logsigmoid(out["attention"].float())
                 + F.logsigmoid(out["interaction"].float())[:, None])
        if self.cfg.lis:
            log_p = log_p + (self.log_lis(batch["scores_h"][ph].float())
                             + self.log_lis(batch["scores_o"][po].float()))[:, None]
        valid = self.object_verb_mask[batch["labels_o"][po]]
        return log_p.clamp(max=self.cfg.max_log_score), valid

    def loss(self, out: Mapping[str, torch.Tensor],
             batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Summed binary cross-entropy of the final verb scores over the allowed verbs."""
        log_p, valid = self.log_scores(out, batch)
        return bce_log_space(log_p, batch["labels"].float(), valid)


def bce_log_space(log_p: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Summed binary cross-entropy of probabilities given by their logs, over ``valid``
    entries only (an invalid verb's probability is 0 by the mask: no gradient, and a GT
    label there would be an infinite constant).

    Args:
        log_p: (P, V) log probabilities, all < 0. labels: (P, V) in {0, 1}. valid: (P, V) bool.
    """
    log_not_p = torch.log(-torch.expm1(log_p))  # log(1 - p), accurate for p near 1 and near 0
    terms = -(labels * log_p + (1 - labels) * log_not_p)
    return torch.where(valid, terms, torch.zeros_like(terms)).sum()
