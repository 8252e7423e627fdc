"""Device-correctness without a GPU: the heads (training step and inference) and the frozen
extractor run with every tensor on PyTorch's ``meta`` device, so a tensor made on the CPU by
accident (a CUDA run's crash) fails here."""

from __future__ import annotations

import pytest
import torch

from hoi.engine.finite import FiniteWatch
from hoi.hoi_config import load_config
from hoi.inference.scoring import PAIR_COLUMNS, pair_scores
from hoi.inputs.random_batch import random_batch
from hoi.models.backbones import backbone_config
from hoi.models.extractor import build_extractor, map_shape
from hoi.models.heads import build_head
from hoi.training.train_heads import build_optimizer, compute_loss

META = torch.device("meta")


@pytest.mark.parametrize("roi_pool", ["official", "align"])
def test_heads_train_and_infer_on_the_meta_device(roi_pool: str) -> None:
    cfg = load_config(None, [f"model.roi_pool={roi_pool}"])
    model = build_head(cfg.model).to(META).train()
    optimizer, _ = build_optimizer(cfg, model)
    batch = {k: v.to(META) for k, v in random_batch(4, 2, 3, labels=True).items()}
    batch["features"] = batch["features"].half()  # as stored
    out = model(batch)
    loss, _, norm = compute_loss(cfg, model, out, batch, world_size=1)
    watch = FiniteWatch(META)
    watch.update(out, loss, 0)
    loss.backward()
    optimizer.step()
    assert loss.device == norm.device == META
    assert all(p.grad is not None and p.grad.device == META for p in model.parameters())
    packed = pair_scores(model.eval(), batch)
    assert packed.device == META and packed.shape == (4 * 2 * 5, 117 + PAIR_COLUMNS)


def test_a_cpu_tensor_among_meta_tensors_is_an_error() -> None:
    """What the test above relies on."""
    with pytest.raises(RuntimeError, match="device"):
        torch.ones(3, 4, device=META) / torch.tensor([1.0, 2.0, 3.0, 4.0])


def test_extractor_map_shape_on_the_model_device() -> None:
    extractor, _ = build_extractor(backbone_config("sac_resnet50"), "none", stage=4)
    assert map_shape(extractor.to(META), (400, 400)) == (1024, 25, 25)
