"""Pairwise spatial inputs of VSGNet (Ulutan et al., CVPR 2020): the two-channel binary
interaction map of a (human, object) box pair and the 4-d relative geometry.

Boxes are in the annotation convention (1-based inclusive pixels of the original image), so
a box's width is ``x2 - x1 + 1`` and never zero for a well-ordered box. Everything here is
vectorised over pairs and runs on any device.
"""

from __future__ import annotations

import torch

from hoi.data.boxes import PIXEL_OFFSET


def box_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Widths and heights (N,) of boxes (N, 4) in the inclusive convention, at least one pixel
    (a degenerate detector box must not give a zero divisor)."""
    w = (boxes[:, 2] - boxes[:, 0] + PIXEL_OFFSET).clamp(min=PIXEL_OFFSET)
    h = (boxes[:, 3] - boxes[:, 1] + PIXEL_OFFSET).clamp(min=PIXEL_OFFSET)
    return w, h


def pair_geometry(boxes_h: torch.Tensor, boxes_o: torch.Tensor) -> torch.Tensor:
    """Relative geometry s_ho of each pair -> (P, 4):
    ``((x1h - x1o) / wo, (y1h - y1o) / ho, log(wh / wo), log(hh / ho))``.

    Args:
        boxes_h, boxes_o: (P, 4) human and object boxes of the P pairs.
    """
    wh, hh = box_sizes(boxes_h)
    wo, ho = box_sizes(boxes_o)
    return torch.stack([
        (boxes_h[:, 0] - boxes_o[:, 0]) / wo,
        (boxes_h[:, 1] - boxes_o[:, 1]) / ho,
        torch.log(wh / wo),
        torch.log(hh / ho),
    ], dim=1)


def _cell_mask(lo: torch.Tensor, hi: torch.Tensor, extent: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size) bool: the cells of a ``size``-cell grid over [1, extent] pixels that the
    inclusive pixel range [lo, hi] touches (pixel c falls in cell floor((c - 1) * size /
    extent))."""
    first = torch.floor((lo - PIXEL_OFFSET) * size / extent).clamp(0, size - 1)
    last = torch.floor((hi - PIXEL_OFFSET) * size / extent).clamp(0, size - 1)
    cells = torch.arange(size, device=lo.device, dtype=lo.dtype)
    return (cells[None, :] >= first[:, None]) & (cells[None, :] <= last[:, None])


def box_masks(boxes: torch.Tensor, image_sizes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size, size) bool map of each box (N, 4) on a size x size grid over its image;
    ``image_sizes`` (N, 2) holds each box's image [w, h]."""
    w, h = image_sizes[:, 0].to(boxes.dtype), image_sizes[:, 1].to(boxes.dtype)
    cols = _cell_mask(boxes[:, 0], boxes[:, 2], w, size)
    rows = _cell_mask(boxes[:, 1], boxes[:, 3], h, size)
    return rows[:, :, None] & cols[:, None, :]


def interaction_maps(
    boxes_h: torch.Tensor,
    boxes_o: torch.Tensor,
    image_sizes: torch.Tensor,
    size: int,
    value: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The 2 x size x size input of the spatial-attention branch -> (P, 2, size, size):
    channel 0 the human box, channel 1 the object box, ``value`` inside, 0 outside.

    Args:
        boxes_h, boxes_o: (P, 4) pair boxes; image_sizes: (P, 2) their image's [w, h].
        value: the fill value (the official VSGNet code uses 100).
    """
    maps = torch.stack([box_masks(boxes_h, image_sizes, size), box_masks(boxes_o, image_sizes,
                                                                         size)], dim=1)
    return maps.to(dtype) * value
