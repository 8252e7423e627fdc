"""Per-box features from the backbone map: the official VSGNet "RoI pooling" or RoIAlign.

Official (``scripts_hico/pool_pairing.py: get_pool_loc``): the detector's continuous box
``[left, top, right, bottom]`` is divided by the image size and multiplied by the map size
(25 for the 400x400 input), each coordinate truncated to an integer, the map cropped to
``F[:, y1:y2 + 1, x1:x2 + 1]`` and max-pooled by ``AdaptiveMaxPool2d(roi_size)``. Boxes in our
files are in the annotation convention (``x1 = left + 1``), so ``left = x1 - 1``. The official
code scales x by the map's first spatial size and y by its second; its map is square, so we use
the width for x and the height for y. A coordinate that truncates to the map size (a box
reaching the right or bottom edge) is clamped to the last cell, as the slice does.

RoIAlign (``align``): torchvision's ``roi_align`` with ``aligned=True`` on the box's
continuous span, bilinear samples, average pooling.
"""

from __future__ import annotations

import torch
from torchvision.ops import roi_align, roi_pool

from hoi.data.boxes import PIXEL_OFFSET
from hoi.registry import Table


def truncated_cells(boxes: torch.Tensor, image_size: torch.Tensor,
                    grid_hw: tuple[int, int]) -> torch.Tensor:
    """The official integer cells of each box on a grid over its image: (K, 4) int64
    ``int([left / w, top / h, right / w, bottom / h] x grid)``, truncated toward zero as Python's
    ``int()`` and not clamped (``pool_pairing.py: get_pool_loc``, ``helpers_preprocess.py:
    union_BOX``; in float64, as numpy computes them there).

    Args:
        boxes: (K, 4) boxes in original pixels, annotation convention (``left = x1 - 1``).
        image_size: (K, 2) ``[w, h]`` of each box's image.
        grid_hw: the grid's (height, width).
    """
    gh, gw = grid_hw
    b = boxes.double()
    w, h = image_size[:, 0].double(), image_size[:, 1].double()
    cont = torch.stack([(b[:, 0] - PIXEL_OFFSET) / w * gw, (b[:, 1] - PIXEL_OFFSET) / h * gh,
                        b[:, 2] / w * gw, b[:, 3] / h * gh], dim=1)
    return torch.trunc(cont).long()


def official_cells(boxes: torch.Tensor, image_size: torch.Tensor,
                   map_hw: tuple[int, int]) -> torch.Tensor:
    """The official integer crop of each box: (K, 4) int64 ``[x1, y1, x2, y2]`` map cells,
    inclusive, clamped to the map as the crop's slice is.

    Args:
        boxes: (K, 4) boxes in original pixels, annotation convention.
        image_size: (K, 2) ``[w, h]`` of each box's image.
        map_hw: the map's (height, width).
    """
    h, w = map_hw
    cells = truncated_cells(boxes, image_size, map_hw)
    x1, x2 = cells[:, 0].clamp(0, w - 1), cells[:, 2].clamp(0, w - 1)
    y1, y2 = cells[:, 1].clamp(0, h - 1), cells[:, 3].clamp(0, h - 1)
    return torch.stack([x1, y1, torch.maximum(x2, x1), torch.maximum(y2, y1)], dim=1)


def official_roi_pool(fmap: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor,
                      image_size: torch.Tensor,
                      output_size: int, sampling_ratio: int = 0) -> torch.Tensor:
    """The official crop + adaptive max pool of each box -> (K, C, output_size, output_size).

    Args:
        fmap: (B, C, H, W) maps. boxes: (K, 4) original pixels, annotation convention.
        image: (K,) index of each box's map. image_size: (B, 2) ``[w, h]`` of each image.
        sampling_ratio: unused (every cell of the crop is read); the signature of ROI_POOLS.

    One batched kernel: torchvision's ``roi_pool`` on the integer cells with spatial scale 1
    reads the same bins as ``AdaptiveMaxPool2d`` on the crop (bin i of n cells spans
    ``floor(i n / out) .. ceil((i + 1) n / out)``), so it equals the official box-by-box pooling
    bit for bit (tests/test_roi.py checks every crop shape of a 25 x 25 map).
    """
    cells = official_cells(boxes, image_size[image], (fmap.shape[2], fmap.shape[3]))
    rois = torch.cat([image[:, None].to(fmap.dtype), cells.to(fmap.dtype)], dim=1)
    return roi_pool(fmap, rois, output_size, 1.0)


def align_roi_pool(fmap: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor,
                   image_size: torch.Tensor,
                   output_size: int, sampling_ratio: int) -> torch.Tensor:
    """RoIAlign of each box's continuous span on the map -> (K, C, output_size, output_size).

    Args as :func:`official_roi_pool`; ``sampling_ratio`` samples per bin side (0: adaptive).
    """
    _, _, h, w = fmap.shape
    size = image_size[image].to(boxes.dtype)  # (K, 2) [w, h]
    sx, sy = w / size[:, 0], h / size[:, 1]
    # 1-based inclusive pixels [x1, x2] cover the continuous span [x1 - 1, x2]
    rois = torch.stack([
        image.to(boxes.dtype),
        (boxes[:, 0] - PIXEL_OFFSET) * sx, (boxes[:, 1] - PIXEL_OFFSET) * sy,
        boxes[:, 2] * sx, boxes[:, 3] * sy,
    ], dim=1)
    return roi_align(fmap, rois.to(fmap.dtype), output_size, 1.0, sampling_ratio, aligned=True)


# model.roi_pool: (fmap, boxes, image, image_size, output_size, sampling_ratio) -> (K, C, S, S)
ROI_POOLS = Table("model.roi_pool", {"official": official_roi_pool, "align": align_roi_pool})
