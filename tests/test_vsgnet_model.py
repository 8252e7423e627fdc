"""The VSGNet heads: shapes, the vectorised graph branch against a per-image reference, the
log-space loss, and refusing weights of another model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hoi.engine.checkpoint import CheckpointError
from hoi.engine.loop import load_model_state
from hoi.inputs.dataset import collate
from hoi.models.heads.vsgnet import VSGNet, VSGNetConfig, bce_log_space

TINY = VSGNetConfig(in_channels=8, block_channels=4, roi_size=3, head_hidden=16, head_channels=12,
                    spatial_size=20, spatial_channels=[4, 4])


def _item(nh: int, no: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(nh + no, 2, generator=g) * 60 + 1
    wh = torch.rand(nh + no, 2, generator=g) * 40 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    ph, po = torch.meshgrid(torch.arange(nh), torch.arange(no), indexing="ij")
    return {"index": seed, "features": torch.randn(8, 6, 6, generator=g),
            "image_size": torch.tensor([110.0, 120.0]),
            "boxes_h": boxes[:nh], "scores_h": torch.rand(nh, generator=g), "boxes_o": boxes[nh:],
            "scores_o": torch.rand(no, generator=g),
            "labels_o": torch.randint(0, 80, (no,), generator=g),
            "pair_h": ph.reshape(-1), "pair_o": po.reshape(-1),
            "labels": (torch.rand(nh * no, 117, generator=g) > 0.9).float()}


def test_shapes_and_scores_in_range() -> None:
    model = VSGNet(TINY).eval()
    batch = collate([_item(2, 3, 0), _item(1, 1, 1)])
    out = model(batch)
    assert out.visual.shape == out.graph.shape == out.attention.shape == (7, 117)
    assert out.interaction.shape == (7,)
    log_p, valid = model.log_scores(out, batch)
    assert log_p.shape == valid.shape == (7, 117)
    assert (log_p < 0).all() and valid.any()


def test_graph_branch_matches_a_per_image_loop() -> None:
    model = VSGNet(TINY).eval()
    items = [_item(2, 3, 0), _item(3, 2, 1)]
    batch = collate(items)
    with torch.no_grad():
        out = model(batch)
        for img, it in enumerate(items):
            b = collate([it])
            f_h = model._roi_features(b["features"], b["boxes_h"], b["image_h"], b["image_size"],
                                      model.human_block)
            f_o = model._roi_features(b["features"], b["boxes_o"], b["image_o"], b["image_size"],
                                      model.object_block)
            single = model(b)
            adj = torch.sigmoid(single.interaction).view(len(f_h), len(f_o))
            g_h = f_h + adj @ model.object_to_human(f_o)
            g_o = f_o + adj.t() @ model.human_to_object(f_h)
            pairs = torch.cat([g_h[b["pair_h"]], g_o[b["pair_o"]]], 1)
            from hoi.models.heads.pair_spatial import official_interaction_maps
            maps = official_interaction_maps(b["boxes_h"][b["pair_h"]], b["boxes_o"][b["pair_o"]],
                                             b["image_size"][b["pair_image"]],
                                             TINY.spatial_size, TINY.spatial_value)
            a = model.spatial(maps)
            expected = model.graph_tail(model.graph_head(pairs) * a)
            rows = batch["pair_image"] == img
            torch.testing.assert_close(out.graph[rows], expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.visual[rows], single.visual, atol=1e-5, rtol=1e-5)


def test_log_space_bce_equals_the_product_form_and_stays_finite() -> None:
    torch.manual_seed(0)
    logits = [torch.randn(5, 7, requires_grad=True) for _ in range(3)]
    labels = (torch.rand(5, 7) > 0.5).float()
    valid = torch.rand(5, 7) > 0.2
    log_p = sum(F.logsigmoid(x) for x in logits)
    ours = bce_log_space(log_p, labels, valid)
    p = math.prod(torch.sigmoid(x) for x in logits)
    naive = F.binary_cross_entropy(p, labels, reduction="none")[valid].sum()
    torch.testing.assert_close(ours, naive, rtol=1e-5, atol=1e-5)
    # extreme logits: the product underflows to 0 or rounds to 1 in float32, the log form does not
    big = torch.tensor([[-1e4, 1e4, 80.0, -80.0]], requires_grad=True)
    log_p = (F.logsigmoid(big) * 3).clamp(max=-1e-6)
    loss = bce_log_space(log_p, torch.tensor([[1.0, 0.0, 0.0, 1.0]]),
                         torch.ones(1, 4, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()


def test_weights_of_another_model_are_refused_with_the_keys() -> None:
    other = VSGNet(VSGNetConfig(**{**TINY.__dict__, "head_channels": 10}))
    with pytest.raises(CheckpointError, match=r"mismatched shapes: .*graph_head"):
        load_model_state(VSGNet(TINY), other.state_dict(), "other.pth")
    state = VSGNet(TINY).state_dict()
    state["extra.weight"] = state.pop("graph_tail.weight")
    with pytest.raises(CheckpointError, match=r"missing keys \['graph_tail.weight'\].*unexpected "
                                              r"keys \['extra.weight'\]"):
        load_model_state(VSGNet(TINY), state, "renamed.pth")
