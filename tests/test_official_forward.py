"""The project's VSGNet heads, with their defaults, against the official forward pass
(tests/official_vsgnet.py, transcribed from ASMIftekhar/VSGNet): the same parameters under a
one-to-one name map, the same logits, fused scores, loss and gradients."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hoi.config import to_dict
from hoi.data.metadata import hico_metadata
from hoi.hoi_config import config_of_checkpoint, load_config
from hoi.inference.scoring import batch_rows
from hoi.inputs.dataset import collate
from hoi.models.heads.vsgnet import VSGNet, VSGNetConfig
from hoi.training.train_heads import build_optimizer, compute_loss, set_epoch_lrs

from .official_vsgnet import (
    OFFICIAL_SPATIAL_MODULES,
    ImageDetections,
    OfficialVSGNet,
    project_name,
    scores_and_loss,
)

PARAMETERS = 16_269_888  # VSGNet's heads without the backbone, 1024-channel maps
PERSON = 49  # HICO object index of "person"
REPO = Path(__file__).resolve().parents[1]


def _boxes(g: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    """n continuous [left, top, right, bottom] boxes inside a w x h image, on a 1/16-pixel grid
    (exact in float32 also after the project's +1), left and top at least a pixel from the far
    edge (a detector's box; the official crop of a box starting on the edge is empty)."""
    def span(size: int) -> tuple[np.ndarray, np.ndarray]:
        lo = g.integers(0, 16 * (size - 1) + 1, n)
        return lo / 16, (lo + g.integers(0, 16 * size - lo + 1)) / 16

    (left, right), (top, bottom) = span(w), span(h)
    return np.stack([left, top, right, bottom], 1).astype(np.float32).reshape(n, 4)


def _images(seed: int = 0) -> list[ImageDetections]:
    g = np.random.default_rng(seed)
    sizes = [(640, 480), (500, 375), (333, 600), (427, 640)]
    counts = [(3, 2), (1, 0), (2, 4), (2, 1)]  # (humans, other objects); image 1: humans only
    images = []
    for (w, h), (nh, no) in zip(sizes, counts):
        persons, objects = _boxes(g, nh, w, h), _boxes(g, no, w, h)
        if no >= 2:  # a box reaching the image's corner, a box thinner than a map cell
            objects[0] = [0, 0, w, h]
            objects[1] = [w / 2, h / 2, w / 2 + 1, h / 2 + 0.5]
        if nh >= 2:  # two boxes with the same left and top cell (s_ho's 0.001 case)
            persons[1, :2] = persons[0, :2]
            persons[1, 2:] = np.maximum(persons[1, 2:], persons[1, :2])
        person_scores = g.uniform(0.6, 1.0, nh).tolist()
        object_scores = g.uniform(0.3, 1.0, no).tolist()
        classes = [int(c) for c in g.choice([c for c in range(80) if c != PERSON], no)]
        images.append(ImageDetections(w, h, persons, np.concatenate([objects, persons]),
                                      person_scores, object_scores + person_scores,
                                      classes + [PERSON] * nh))
    return images


def _project_batch(images: list[ImageDetections], maps: torch.Tensor,
                   labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same images as the project's collate makes them (boxes + 1 on left and top)."""
    items, start = [], 0
    for i, det in enumerate(images):
        nh, no = len(det.persons), len(det.objects)
        ph, po = torch.meshgrid(torch.arange(nh), torch.arange(no), indexing="ij")
        to_ours = lambda b: torch.from_numpy(b + np.float32([1, 1, 0, 0]))  # noqa: E731
        items.append({"index": i, "features": maps[i],
                      "image_size": torch.tensor([det.width, det.height], dtype=torch.float32),
                      "boxes_h": to_ours(det.persons), "scores_h": torch.tensor(det.person_scores),
                      "boxes_o": to_ours(det.objects), "scores_o": torch.tensor(det.object_scores),
                      "labels_o": torch.tensor(det.object_classes),
                      "pair_h": ph.reshape(-1), "pair_o": po.reshape(-1),
                      "labels": labels[start:start + nh * no]})
        start += nh * no
    return collate(items)


def _copy_weights(ours: VSGNet, official: OfficialVSGNet) -> None:
    state = ours.state_dict()
    official.load_state_dict({k: state[project_name(k)] for k in official.state_dict()})


def _randomise(model: VSGNet, seed: int) -> None:
    """Random running statistics and affine BatchNorm parameters (defaults would hide a swap)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest absolute difference over the largest absolute official value (at least 1)."""
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp(min=1.0))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    images = _images()
    maps = torch.randn(len(images), 1024, 25, 25).abs()  # a ReLU layer's output
    pairs = sum(len(d.persons) * len(d.objects) for d in images)
    mask = hico_metadata().object_verb_mask
    classes = np.concatenate([np.tile(d.object_classes, len(d.persons)) for d in images])
    labels = torch.from_numpy((np.random.default_rng(1).random((pairs, 117)) > 0.9)
                              & mask[classes]).float()
    ours = VSGNet(VSGNetConfig())
    _randomise(ours, 0)
    official = OfficialVSGNet()
    _copy_weights(ours, official)
    return images, maps, labels, ours, official, mask


def test_parameters_map_one_to_one_onto_the_official_model(setup) -> None:
    *_, ours, official, _ = setup
    theirs, mine = official.state_dict(), ours.state_dict()
    mapped = {project_name(k): v.shape for k, v in theirs.items()}
    assert len(mapped) == len(theirs) == len(mine)
    assert mapped == {k: v.shape for k, v in mine.items()}
    assert sum(p.numel() for p in ours.parameters()) == PARAMETERS
    assert sum(p.numel() for p in official.parameters()) == PARAMETERS


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_default_model_equals_the_official_forward(setup, train: bool) -> None:
    images, maps, labels, ours, official, mask = setup
    ours.train(train)
    official.train(train)
    batch = _project_batch(images, maps, labels)
    with torch.no_grad():
        out = ours(batch)
        visual, single, graph, att = official(maps, images)
        for name, theirs in (("visual", visual), ("interaction", single.squeeze(1)),
                             ("graph", graph), ("attention", att)):
            # float32 sums in another order (mean vs AvgPool2d, index_add vs mm): 1e-5 of the
            # outputs' scale
            assert _relative_error(out[name], theirs) < 1e-5, name
        product, _ = scores_and_loss([visual, single, graph, att], images, labels, mask)
        log_p, valid = ours.log_scores(out, batch)
        fused = torch.where(valid, log_p.exp(), torch.zeros_like(log_p))
        torch.testing.assert_close(fused, product, atol=1e-6, rtol=1e-5)
        assert product[~valid].abs().max() == 0  # the mask: no score outside the object's verbs
    ours.eval()
    official.eval()


@pytest.mark.parametrize("key", ["interaction_map", "pair_geometry"])
def test_the_pixel_versions_are_not_the_official_forward(setup, key: str) -> None:
    images, maps, labels, ours, official, _ = setup
    pixel = VSGNet(VSGNetConfig(**{key: "pixel"})).eval()
    pixel.load_state_dict(ours.state_dict())
    batch = _project_batch(images, maps, labels)
    with torch.no_grad():
        visual = official(maps, images)[0]
        assert _relative_error(ours(batch).visual, visual) < 1e-5
        assert _relative_error(pixel(batch).visual, visual) > 1e-4


def test_loss_and_gradients_equal_the_official_ones(setup) -> None:
    images, maps, labels, ours, official, mask = setup
    cfg = load_config()
    assert cfg.optim.loss_normalizer == "images"
    batch = _project_batch(images, maps, labels)
    ours.zero_grad()
    official.zero_grad()
    loss, _, norm = compute_loss(cfg, ours, ours(batch), batch, world_size=1)
    _, theirs = scores_and_loss(official(maps, images), images, labels, mask)
    assert norm.item() == len(images) * 117
    torch.testing.assert_close(loss, theirs, atol=1e-6, rtol=1e-5)
    loss.backward()
    theirs.backward()
    mine = dict(ours.named_parameters())
    for name, p in official.named_parameters():
        torch.testing.assert_close(mine[project_name(name)].grad, p.grad, atol=1e-6, rtol=1e-4,
                                   msg=name)


def test_the_fixed_spatial_rate_is_the_official_spatial_branch() -> None:
    cfg = load_config()
    model = VSGNet(cfg.model)
    _, specs = build_optimizer(cfg, model)
    groups = {g["name"]: g for g in model.param_groups(cfg.optim.lr)}
    assert specs == [{"name": "main", "lr": 0.001, "scheduled": True},
                     {"name": "spatial", "lr": 0.001, "scheduled": False}]
    official = OfficialVSGNet()
    fixed = {project_name(n) for n, _ in official.named_parameters()
             if n.split(".")[0] in OFFICIAL_SPATIAL_MODULES}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups["spatial"]["params"]} == fixed
    assert len(groups["main"]["params"]) + len(fixed) == len(names)


def _official_lrs(epochs: int) -> list[list[float]]:
    """The official main.py's rates per epoch: SGD groups [trainables at lr 0.001, spatial at
    0.001], LambdaLR(lambda1, lambda2) and scheduler.step() at the start of every epoch
    (train_test.train_test)."""
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optim1 = torch.optim.SGD([{"params": [params[0]], "lr": 0.001},
                              {"params": [params[1]], "lr": 0.001}], momentum=0.9,
                             weight_decay=0.0001)
    lambda1 = lambda epoch: 1.0 if epoch < 10 else (0.1 if epoch < 28 else 1)  # noqa: E731
    lambda2 = lambda epoch: 1  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optim1, [lambda1, lambda2])
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # step() before optimizer.step(), as the official loop
        for _ in range(epochs):
            scheduler.step()
            lrs.append([g["lr"] for g in optim1.param_groups])
    return lrs


OFFICIAL_SCHEDULE = ["optim.batch_size=8", "optim.epochs=80", "optim.lr=0.001",
                     "model.spatial_lr=0.001", "optim.lr_factor=0.1",
                     "optim.lr_factor_epochs=[10,27]"]


@pytest.mark.parametrize("overrides", [[], OFFICIAL_SCHEDULE], ids=["sac_paper", "official"])
def test_learning_rate_of_every_epoch(overrides: list[str]) -> None:
    cfg = load_config(REPO / "configs/hico/base.yaml", overrides)
    model = VSGNet(VSGNetConfig(in_channels=8, block_channels=4, head_hidden=8, head_channels=8))
    optimizer, specs = build_optimizer(cfg, model)
    got = []
    for epoch in range(cfg.optim.epochs):
        set_epoch_lrs(optimizer, specs, cfg.optim, epoch)
        got.append([g["lr"] for g in optimizer.param_groups])
    if overrides:
        expected = _official_lrs(80)
    else:  # SAC paper, Sec. IV-C: 50 epochs, lr 0.001 x10 in epochs 10-28, spatial 0.001
        expected = [[0.001 * (10 if 10 <= e <= 28 else 1), 0.001] for e in range(1, 51)]
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_lis_and_test_time_defaults_are_the_official_ones() -> None:
    for cfg in (load_config(), load_config(REPO / "configs/hico/base.yaml")):
        m = cfg.model
        assert (m.lis, m.lis_t, m.lis_k, m.lis_w) == (True, 8.3, 12.0, 10.0)
        assert (m.roi_pool, m.interaction_map, m.pair_geometry) == ("official",) * 3
        assert cfg.test.min_score == 0.0 and cfg.test.max_per_image is None
    # every valid HOI of each pair's object class is written, however low its score
    images = _images(2)
    maps = torch.randn(len(images), 8, 25, 25)
    pairs = sum(len(d.persons) * len(d.objects) for d in images)
    batch = _project_batch(images, maps, torch.zeros(pairs, 117))
    batch["scores_h"] = batch["scores_h"] * 0.01  # LIS ~ 1e-4: tiny scores, still written
    model = VSGNet(VSGNetConfig(in_channels=8, block_channels=4, head_hidden=8,
                                head_channels=8)).eval()
    with torch.no_grad():
        rows = batch_rows(model, batch, load_config().test)
    meta = hico_metadata()
    pair_object = batch["labels_o"][batch["pair_o"]].numpy()
    expected = sorted((int(batch["index"][batch["pair_image"][p]]), int(h))
                      for p, obj in enumerate(pair_object)
                      for h in meta.pair_to_hoi[obj][meta.object_verb_mask[obj]])
    assert len(rows["score"]) == len(expected) == int(meta.object_verb_mask[pair_object].sum())
    assert sorted(zip(rows["image_index"].tolist(), rows["hoi"].tolist())) == sorted(
        (i, h) for i, h in expected)  # one row per (pair, HOI): none dropped
    assert 0 < float(rows["score"].max()) < 1e-3


def test_checkpoints_from_before_the_switches_read_as_they_were_trained(caplog) -> None:
    saved = to_dict(load_config())
    assert config_of_checkpoint({"config": saved, "arch": {}}, "new.pth").model.pair_geometry \
        == "official"
    for key in ("interaction_map", "pair_geometry"):
        del saved["model"][key]
    with caplog.at_level(logging.WARNING, logger="hoi"):
        cfg = config_of_checkpoint({"config": saved, "arch": {}}, "old.pth")
    assert (cfg.model.interaction_map, cfg.model.pair_geometry) == ("pixel", "pixel")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "old.pth" in lines[0]
    assert "model.interaction_map=pixel model.pair_geometry=pixel" in lines[0]
