"""Parameter and FLOP counts of backbone configurations (the paper's Tables IX and X).

FLOPs are multiply-adds, as the paper counts them: torch's FlopCounterMode counts a
multiply-add as 2 FLOPs, so its total is halved. Convolutions, matrix products and the
classifier are counted; element-wise operations, pooling and softmax are not.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from hoi.models.backbones import (
    AttentionResNet,
    BackboneConfig,
    attention_block,
    block_options,
    resolved_placement,
)
from hoi.models.weights import count_parameters


@dataclass
class Complexity:
    params: int
    flops: int  # multiply-adds of what the default code executes
    # multiply-adds with the block's equations computed in their written order (SAC's Eq. 5),
    # where the default code uses an equal but cheaper rewrite (AttentionBlock.as_written)
    flops_paper_order: int
    input_size: tuple[int, int]


def count_multiply_adds(model: torch.nn.Module, input_size: tuple[int, int]) -> int:
    """Multiply-adds of one forward pass on a single (1, 3, H, W) image."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *input_size))
    return counter.get_total_flops() // 2


def measure(config: BackboneConfig, input_size: tuple[int, int] = (224, 224)) -> Complexity:
    """Params and multiply-adds of the backbone described by ``config``."""
    model = AttentionResNet(config)
    flops = count_multiply_adds(model, input_size)
    block = attention_block(config.attention)
    written = None if block is None else block.as_written(block_options(config.attention))
    if written is not None:
        paper_cfg = copy.deepcopy(config)
        paper_cfg.attention.options = written
        flops_paper = count_multiply_adds(AttentionResNet(paper_cfg), input_size)
    else:
        flops_paper = flops
    return Complexity(count_parameters(model), flops, flops_paper, tuple(input_size))


def describe(config: BackboneConfig) -> str:
    """A short human description of the placement, e.g. 'sac l=32 after_conv2, stages 2-4 last'."""
    att = config.attention
    if attention_block(att) is None:
        return "none"
    position, reduction = resolved_placement(att)
    stages = ",".join(str(s) for s in att.stages)
    return f"{att.type} r={reduction} {position}, stages {stages} ({att.blocks})"
