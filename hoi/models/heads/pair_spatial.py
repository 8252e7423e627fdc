"""Pairwise spatial inputs of VSGNet (Ulutan et al., CVPR 2020): the two-channel interaction map
of a (human, object) box pair and the 4-d relative geometry s_ho.

Two versions of each, picked by ``model.interaction_map`` and ``model.pair_geometry``:

- ``official`` (the default): as the official code computes them (ASMIftekhar/VSGNet,
  ``scripts_hico/``). The map (``helpers_preprocess.py: union_BOX``) takes the detector's
  continuous box divided by the image size, times 64, truncated to integers, and fills
  ``map[y1:y2 + 1, x1:x2 + 1]`` (a numpy slice: an end past the map stops at its edge). The
  geometry (``pool_pairing.py: get_pool_loc`` and ``extract_spatial``) uses the box's integer
  cells on the backbone map (25 x 25), the same cells the RoI crop starts from, with their
  widths ``x2 - x1`` (a zero width or height counts as 1) and a zero offset counted as 0.001.
- ``pixel``: from the pixel boxes: the map's cells are those the box's pixels touch, s_ho uses
  the inclusive pixel widths. This project's first version; kept for old checkpoints.

Boxes are in the annotation convention (1-based inclusive pixels of the original image, the
detector's continuous ``left`` is ``x1 - 1``). Everything is vectorised over pairs and makes its
tensors on the boxes' device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hoi.data.boxes import PIXEL_OFFSET
from hoi.models.heads.roi import truncated_cells
from hoi.registry import Table

OFFSET_FOR_ZERO = 0.001  # official extract_spatial: x1h - x1o == 0 counts as this


# ------------------------------------------------------------------ the official versions
def official_pair_geometry(boxes_h: torch.Tensor, boxes_o: torch.Tensor,
                           image_sizes: torch.Tensor, map_hw: tuple[int, int]) -> torch.Tensor:
    """s_ho of each pair from the boxes' integer cells on the backbone map -> (P, 4) float32:
    ``(dx / wo, dy / ho, log(wh / wo), log(hh / ho))`` with ``w = x2 - x1`` in cells (0 -> 1)
    and ``dx = x1h - x1o`` (0 -> 0.001), as the official ``extract_spatial`` computes it.

    Args:
        boxes_h, boxes_o: (P, 4) human and object boxes of the P pairs.
        image_sizes: (P, 2) ``[w, h]`` of each pair's image. map_hw: the map's (height, width).
    """
    ch = truncated_cells(boxes_h, image_sizes, map_hw).double()
    co = truncated_cells(boxes_o, image_sizes, map_hw).double()

    def nonzero(x: torch.Tensor, value: float) -> torch.Tensor:
        return torch.where(x == 0, torch.full_like(x, value), x)

    wh, hh = nonzero(ch[:, 2] - ch[:, 0], 1.0), nonzero(ch[:, 3] - ch[:, 1], 1.0)
    wo, ho = nonzero(co[:, 2] - co[:, 0], 1.0), nonzero(co[:, 3] - co[:, 1], 1.0)
    dx = nonzero(ch[:, 0] - co[:, 0], OFFSET_FOR_ZERO)
    dy = nonzero(ch[:, 1] - co[:, 1], OFFSET_FOR_ZERO)
    return torch.stack([dx / wo, dy / ho, torch.log(wh / wo), torch.log(hh / ho)], 1).float()


def _slice_mask(first: torch.Tensor, last: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size) bool: the cells ``first .. last`` (inclusive) of a numpy slice
    ``[first:last + 1]`` on a ``size``-cell axis (first >= 0)."""
    cells = torch.arange(size, device=first.device)
    return (cells[None, :] >= first[:, None]) & (cells[None, :] <= last[:, None])


def official_interaction_maps(boxes_h: torch.Tensor, boxes_o: torch.Tensor,
                              image_sizes: torch.Tensor, size: int, value: float,
                              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The official two-box map -> (P, 2, size, size): channel 0 the human box, channel 1 the
    object box, ``value`` on the cells ``int(box / image size x size)`` (inclusive), 0 elsewhere.

    Args:
        boxes_h, boxes_o: (P, 4) pair boxes; image_sizes: (P, 2) their image's [w, h].
        value: the fill value (the official code uses 100).
    """
    masks = []
    for boxes in (boxes_h, boxes_o):
        cells = truncated_cells(boxes, image_sizes, (size, size)).clamp(min=0)
        rows = _slice_mask(cells[:, 1], cells[:, 3], size)
        cols = _slice_mask(cells[:, 0], cells[:, 2], size)
        masks.append(rows[:, :, None] & cols[:, None, :])
    return torch.stack(masks, dim=1).to(dtype) * value


# ------------------------------------------------------------------ the pixel versions
def box_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Widths and heights (N,) of boxes (N, 4) in the inclusive convention, at least one pixel
    (a degenerate detector box must not give a zero divisor)."""
    w = (boxes[:, 2] - boxes[:, 0] + PIXEL_OFFSET).clamp(min=PIXEL_OFFSET)
    h = (boxes[:, 3] - boxes[:, 1] + PIXEL_OFFSET).clamp(min=PIXEL_OFFSET)
    return w, h


def pixel_pair_geometry(boxes_h: torch.Tensor, boxes_o: torch.Tensor,
                        image_sizes: torch.Tensor | None = None,
                        map_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """s_ho of each pair from the pixel boxes -> (P, 4) float32:
    ``((x1h - x1o) / wo, (y1h - y1o) / ho, log(wh / wo), log(hh / ho))``, inclusive widths.

    Args:
        boxes_h, boxes_o: (P, 4) human and object boxes of the P pairs; ``image_sizes`` and
        ``map_hw`` are unused (the signature of :data:`PAIR_GEOMETRIES`).
    """
    boxes_h, boxes_o = boxes_h.float(), boxes_o.float()
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


def pixel_interaction_maps(boxes_h: torch.Tensor, boxes_o: torch.Tensor,
                           image_sizes: torch.Tensor, size: int, value: float,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The two-box map from the cells the boxes' pixels touch -> (P, 2, size, size).
    Args as :func:`official_interaction_maps`."""
    maps = torch.stack([box_masks(boxes_h, image_sizes, size),
                        box_masks(boxes_o, image_sizes, size)], dim=1)
    return maps.to(dtype) * value


# model.pair_geometry: (boxes_h, boxes_o, image_sizes, map_hw) -> (P, 4) float32
PAIR_GEOMETRIES: Table[Callable[..., torch.Tensor]] = Table(
    "model.pair_geometry", {"official": official_pair_geometry, "pixel": pixel_pair_geometry})
# model.interaction_map: (boxes_h, boxes_o, image_sizes, size, value, dtype) -> (P, 2, S, S)
INTERACTION_MAPS: Table[Callable[..., torch.Tensor]] = Table(
    "model.interaction_map",
    {"official": official_interaction_maps, "pixel": pixel_interaction_maps})
