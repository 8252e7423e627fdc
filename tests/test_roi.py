"""model.roi_pool: the official integer crop + adaptive max pool (default) and RoIAlign (align)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoi.models.heads.roi import align_roi_pool, official_cells, official_roi_pool
from hoi.models.heads.vsgnet import VSGNet, VSGNetConfig


def _official_reference(fmap, boxes, image, image_size, out):
    """The official get_pool_loc, box by box: continuous box / image size * map size, int(),
    F[:, y1:y2+1, x1:x2+1], AdaptiveMaxPool2d (our boxes are the detector's + 1 on x1, y1)."""
    pool = nn.AdaptiveMaxPool2d((out, out))
    res = []
    for b, i in zip(boxes.tolist(), image.tolist()):
        w, h = image_size[i].tolist()
        left, top, right, bottom = b[0] - 1, b[1] - 1, b[2], b[3]
        s = fmap.shape[-1]
        x1, y1, x2, y2 = (int(left / w * s), int(top / h * s), int(right / w * s),
                          int(bottom / h * s))
        res.append(pool(fmap[i][:, y1:y2 + 1, x1:x2 + 1]))
    return torch.stack(res)


def test_official_cells_by_hand() -> None:
    boxes = torch.tensor([[101.0, 50.0, 300.0, 479.0], [1.0, 1.0, 640.0, 480.0],
                          [640.0, 480.0, 640.0, 480.0]])
    size = torch.tensor([[640.0, 480.0]] * 3)
    # [100, 49, 300, 479] / [640, 480] * 25 = [3.91, 2.55, 11.72, 24.95]; the whole image reaches
    # 25, which the slice clamps to the last cell; a one-pixel box at the corner is cell (24, 24)
    assert (official_cells(boxes, size, (25, 25)).tolist()
            == [[3, 2, 11, 24], [0, 0, 24, 24], [24, 24, 24, 24]])


def test_official_pool_takes_the_max_of_the_crop() -> None:
    fmap = torch.arange(2 * 25 * 25, dtype=torch.float32).reshape(1, 2, 25, 25)
    boxes = torch.tensor([[101.0, 50.0, 300.0, 479.0]])
    out = official_roi_pool(fmap, boxes, torch.tensor([0]), torch.tensor([[640.0, 480.0]]), 1)
    # cells x 3..11, y 2..24: the largest value is at (y 24, x 11) of each channel
    assert out.flatten().tolist() == [24 * 25 + 11, 625 + 24 * 25 + 11]


@pytest.mark.parametrize("out_size, map_size", [(10, 25), (3, 16), (7, 13)])
def test_official_pool_equals_the_box_by_box_reference(out_size: int, map_size: int) -> None:
    g = torch.Generator().manual_seed(out_size)
    fmap = torch.randn(3, 4, map_size, map_size, generator=g)
    image_size = torch.tensor([[640.0, 480.0], [500.0, 375.0], [333.0, 600.0]])
    k = 60
    image = torch.randint(0, 3, (k,), generator=g)
    wh = image_size[image]
    xy1 = torch.rand(k, 2, generator=g) * (wh - 2) + 1
    xy2 = xy1 + torch.rand(k, 2, generator=g) * (wh - xy1)
    boxes = torch.cat([xy1, xy2], 1)
    boxes[:3] = torch.tensor([[1.0, 1.0, 640.0, 480.0], [1.0, 1.0, 2.0, 2.0],
                              [300.0, 200.0, 330.0, 205.0]])
    image[:3] = 0
    got = official_roi_pool(fmap, boxes, image, image_size, out_size)
    assert torch.equal(got, _official_reference(fmap, boxes, image, image_size, out_size))


def test_vsgnet_uses_the_configured_pooling() -> None:
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(1, 8, 6, 6, generator=g)
    boxes = torch.tensor([[5.0, 7.0, 60.0, 90.0], [20.0, 3.0, 100.0, 40.0]])
    image, size = torch.tensor([0, 0]), torch.tensor([[110.0, 120.0]])
    base = dict(in_channels=8, block_channels=4, roi_size=3, head_hidden=16, head_channels=12,
                spatial_size=20,
                spatial_channels=[4, 4])
    assert VSGNetConfig().roi_pool == "official"
    for kind, pooled in (("official", official_roi_pool(fmap, boxes, image, size, 3)),
                         ("align", align_roi_pool(fmap, boxes, image, size, 3, 2))):
        model = VSGNet(VSGNetConfig(roi_pool=kind, **base)).eval()
        with torch.no_grad():
            got = model._roi_features(fmap, boxes, image, size, model.human_block)
            assert torch.allclose(got, model.human_block(pooled).mean(dim=(2, 3)))
    assert not torch.allclose(official_roi_pool(fmap, boxes, image, size, 3),
                              align_roi_pool(fmap, boxes, image, size, 3, 2))


def test_official_pool_equals_the_crop_for_every_crop_shape_and_in_backward() -> None:
    """Every (y1, y2) of a 25 x 25 map (and x1, x2 on a stride): one batched kernel equals
    ``AdaptiveMaxPool2d(10)`` on the crop, values and gradients."""
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(1, 2, 25, 25, generator=g, requires_grad=True)
    cells = torch.tensor([[x1, y1, x2, y2] for y1 in range(25) for y2 in range(y1, 25)
                          for x1 in range(0, 25, 4) for x2 in range(x1, 25, 3)])
    # boxes whose official cells are exactly these: continuous [x1, y1, x2 + 0.5, y2 + 0.5] in
    # a 25 x 25-pixel image (+1 on left and top for the annotation convention)
    boxes = torch.cat([cells[:, :2] + 1.0, cells[:, 2:] + 0.5], 1)
    size = torch.tensor([[25.0, 25.0]])
    image = torch.zeros(len(boxes), dtype=torch.int64)
    assert torch.equal(official_cells(boxes, size[image], (25, 25)), cells)
    got = official_roi_pool(fmap, boxes, image, size, 10)
    expected = torch.stack([nn.functional.adaptive_max_pool2d(fmap[0, :, y1:y2 + 1, x1:x2 + 1], 10)
                            for x1, y1, x2, y2 in cells.tolist()])
    assert torch.equal(got, expected)
    weights = torch.randn(got.shape, generator=g)
    grad_got, = torch.autograd.grad((got * weights).sum(), fmap)
    grad_expected, = torch.autograd.grad((expected * weights).sum(), fmap)
    # the same argmax receives each bin's gradient; thousands of overlapping boxes sum in
    # another order
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-5,
                               atol=1e-5 * float(grad_expected.abs().max()))
