"""hoi.vis and ``hoi vis``: HOI detections on images, SAC attention/norm maps (paper Fig. 4, 5),
beta cosine similarities (Fig. 3) and precision-recall curves whose AP is the evaluator's."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hoi.cli import main as hoi_main
from hoi.data import hico_metadata
from hoi.data.annotations import load_annotations
from hoi.data.images import load_rgb
from hoi.evaluation import HOIResults, evaluate
from hoi.evaluation.pr_curves import precision_recall, precision_recall_curves
from hoi.models.backbones import AttentionResNet, backbone_config
from hoi.vis import (
    VisError,
    beta_similarities,
    load_sac_backbone,
    sac_maps,
    save_attention_maps,
    save_beta_similarity,
    save_detection_images,
    save_pr_curves,
)
from hoi.vis.attention import pairwise_cosine, sac_modules

from .hicodet_synth import make_instances, random_box
from .photos import make_photo_split

pytestmark = pytest.mark.filterwarnings("ignore:.*HOI classes have no GT pair:UserWarning")
INPUT = (96, 96)
# SAC in the last bottleneck of stages 3 and 4 only: two blocks keep the tests fast
BACKBONE_YAML = """\
depth: 50
attention:
  type: sac
  stages: [3, 4]
  blocks: last
  position: after_conv2
  reduction: 32
"""


def _png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(np.int64)


def _not_flat(arr: np.ndarray) -> bool:
    return arr.reshape(-1, 3).std(axis=0).max() > 5


# ---------------------------------------------------------------- precision-recall


def _noisy_detections(data: dict, rng: np.random.Generator) -> HOIResults:
    """GT pairs jittered (some beyond the IoU threshold), duplicates and random false positives."""
    meta = hico_metadata()
    rows = {k: [] for k in ("image_index", "boxes_h", "boxes_o", "hoi", "score")}
    classes = sorted({c for a in data["annotation"] for c in a["hoi"]})
    for i, (a, (w, h)) in enumerate(zip(data["annotation"], data["size"])):
        for bh, bo, c in zip(a["boxes_h"], a["boxes_o"], a["hoi"]):
            # the second copy is a duplicate: a false positive once the first matched
            for _ in range(2):
                jitter = rng.normal(0, 6, size=(2, 4))
                rows["boxes_h"].append(_ordered(np.asarray(bh) + jitter[0]))
                rows["boxes_o"].append(_ordered(np.asarray(bo) + jitter[1]))
                rows["image_index"].append(i)
                rows["hoi"].append(c)
                rows["score"].append(float(rng.random()))
        for _ in range(3):
            rows["boxes_h"].append(random_box(rng, w, h))
            rows["boxes_o"].append(random_box(rng, w, h))
            rows["image_index"].append(i)
            rows["hoi"].append(int(rng.choice(classes)))
            rows["score"].append(float(rng.random()))
    hoi = np.asarray(rows["hoi"])
    return HOIResults(np.asarray(rows["image_index"]), np.asarray(rows["boxes_h"]),
                      np.asarray(rows["boxes_o"]), meta.hoi_object[hoi], hoi,
                      np.asarray(rows["score"]), filenames=list(data["filenames"]))


def _ordered(box: np.ndarray) -> list[float]:
    x1, x2 = sorted(box[[0, 2]])
    y1, y2 = sorted(box[[1, 3]])
    return [float(x1), float(y1), float(x2), float(y2)]


@pytest.fixture(scope="module")
def synth_eval() -> tuple[dict, HOIResults, list[int]]:
    rng = np.random.default_rng(3)
    classes = [0, 1, 2, 155, 420]  # 155/420: other objects, so Known-Object drops some rows
    data = make_instances(rng, num_images=12, max_pairs=4, hois=classes)
    return data, _noisy_detections(data, rng), classes


@pytest.mark.parametrize("setting", ["default", "known_object"])
def test_pr_curve_ap_equals_the_evaluators(synth_eval, setting: str) -> None:
    data, det, classes = synth_eval
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(data, det, setting)
    curves = precision_recall_curves(data, det, classes + [7], setting)
    for curve in curves:
        assert curve.ap == result[setting].ap[curve.hoi_class]  # the same number, not just close
        assert curve.final_recall == pytest.approx(result[setting].recall[curve.hoi_class])
    informative = [c for c in curves if c.hoi_class in classes]
    assert any(0 < c.ap < 1 for c in informative)
    for c in informative:
        assert len(c.precision) == len(c.recall) == len(c.score) == len(c.tp) > 0
        assert np.all(np.diff(c.recall) >= 0) and np.all(np.diff(c.score) <= 0)
        assert c.recall[-1] <= 1 and c.npos == sum(k == c.hoi_class for a in data["annotation"]
                                                   for k in a["hoi"])
        assert len(c.interpolated) == 11 and np.mean(c.interpolated) == pytest.approx(c.ap)
    empty = curves[-1]  # class 7: neither GT nor detections
    assert empty.ap == 0 and len(empty.recall) == 0
    single = precision_recall(data, det, classes[0], setting)
    assert single.ap == result[setting].ap[classes[0]]


def test_pr_curve_rejects_a_bad_class(synth_eval) -> None:
    data, det, _ = synth_eval
    with pytest.raises(ValueError, match="out of range"):
        precision_recall(data, det, 600)


def test_pr_curve_pictures(synth_eval, tmp_path: Path) -> None:
    data, det, classes = synth_eval
    paths = save_pr_curves(data, det, tmp_path, classes=classes)
    assert paths == [tmp_path / "pr_default.png"]
    img = _png(paths[0])
    assert img.shape == (480, 640, 3) and _not_flat(img)
    many = save_pr_curves(data, det, tmp_path / "many", classes=list(range(10)),
                          setting="known_object")
    assert [p.name for p in many] == ["pr_known_object_1.png", "pr_known_object_2.png"]


def test_hoi_vis_pr_command(synth_eval, tmp_path: Path) -> None:
    data, det, _ = synth_eval
    anno = tmp_path / "instances.json"
    anno.write_text(__import__("json").dumps(data))
    det.save(tmp_path / "results.npz")
    assert hoi_main(["vis", "pr", "--anno", str(anno), "--results", str(tmp_path / "results.npz"),
                     "--out", str(tmp_path / "pr"), "--top", "3"]) == 0
    assert _not_flat(_png(tmp_path / "pr" / "pr_default.png"))


# ---------------------------------------------------------------- HOI detections on images


@pytest.fixture(scope="module")
def photo_split(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two 160-px photos, their annotation, and a results file (with filenames)."""
    root = tmp_path_factory.mktemp("photos")
    images, anno = make_photo_split(root, 2)
    data = load_annotations(anno)
    meta = hico_metadata()
    cup = meta.objects.index("cup")
    lo, _ = meta.object_hoi_range(cup)
    det = HOIResults(
        image_index=np.array([0, 0, 0, 1]),
        boxes_h=np.array([[20, 20, 80, 70]] * 4, float),
        boxes_o=np.array([[90, 30, 140, 100], [90, 30, 140, 100], [100, 80, 150, 110],
                          [90, 30, 140, 100]], float),
        object=np.full(4, cup), hoi=np.array([lo, lo + 1, lo, lo + 2]),
        score=np.array([0.9, 0.6, 0.3, 0.05]), filenames=list(data["filenames"]))
    results = root / "results.npz"
    det.save(results)
    return images, anno, results


def test_detections_are_drawn_on_the_image(photo_split, tmp_path: Path) -> None:
    images, anno, results = photo_split
    paths = save_detection_images(results, images, tmp_path, scale=1.0)
    # image 2 has only a detection below --min-score 0.1
    assert paths == [tmp_path / "HICO_test2015_00000001_hoi.png"]
    out = _png(paths[0])
    photo = np.asarray(load_rgb(images / "HICO_test2015_00000001.jpg")).astype(np.int64)
    assert out.shape == photo.shape == (160, 160, 3)
    diff = np.abs(out - photo).max(axis=2)
    # human box [20, 20, 80, 70] (1-based): its left edge runs through 0-based columns 17..20
    assert diff[30:60, 17:21].max(axis=1).mean() > 60
    assert diff[22:38, 24:60].mean() < 3  # inside the box, above the labels: the photo unchanged
    assert diff[125:, :15].mean() < 3  # bottom-left corner, no drawing


def test_detections_with_ground_truth_and_scale(photo_split, tmp_path: Path) -> None:
    images, anno, results = photo_split
    plain = _png(save_detection_images(results, images, tmp_path / "a", scale=2.0)[0])
    with_gt = _png(save_detection_images(results, images, tmp_path / "b", anno=anno, scale=2.0,
                                         top=1)[0])
    assert plain.shape == with_gt.shape == (320, 320, 3)
    # the GT human box [1, 1, 80, 160] is drawn dashed along the bottom edge
    assert np.abs(with_gt[-6:, 20:140] - plain[-6:, 20:140]).max() > 60
    two = save_detection_images(results, images, tmp_path / "c", min_score=0.0)
    assert len(two) == 2 and Image.open(two[0]).size == (640, 640)  # small images enlarged


def test_detections_errors_name_the_problem(photo_split, tmp_path: Path) -> None:
    images, anno, results = photo_split
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VisError, match=r"not in the image folder "
                                       r".*empty.*HICO_test2015_00000001\.jpg"):
        save_detection_images(results, empty, tmp_path / "out")
    det = HOIResults.load(results)
    det.filenames = None
    with pytest.raises(VisError, match="no 'filenames'.*--anno"):
        save_detection_images(det, images, tmp_path / "out")
    with pytest.raises(VisError, match="no detection has a score >= 0.95"):
        save_detection_images(results, images, tmp_path / "out", min_score=0.95)
    det.filenames = ["HICO_other_1.jpg", "HICO_other_2.jpg"]
    with pytest.raises(ValueError, match="not in the annotation file"):
        save_detection_images(det, images, tmp_path / "out", anno=anno)


def test_hoi_vis_detections_command(photo_split, tmp_path: Path, capsys) -> None:
    images, anno, results = photo_split
    rc = hoi_main(["vis", "detections", "--results", str(results), "--images", str(images),
                   "--anno", str(anno),
                   "--out", str(tmp_path), "--top", "2", "--min-score", "0", "--max-images", "1",
                   "--scale", "1"])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HICO_test2015_00000001_hoi.png"]
    assert "wrote" in capsys.readouterr().out
    assert hoi_main(["vis", "detections", "--results", str(results), "--images",
                     str(tmp_path / "nowhere"),
                     "--out", str(tmp_path)]) == 2
    assert "not in the image folder" in capsys.readouterr().err


# ---------------------------------------------------------------- SAC maps (Fig. 3, 4, 5)


def _randomise_attention(model: torch.nn.Module) -> None:
    """Random SAC parameters, W_rho included (it starts at zero, the block as the identity)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, m in sac_modules(model):
            for conv in (m.phi, m.theta, m.rho):
                conv.weight.normal_(0, 0.05, generator=gen)
                conv.bias.normal_(0, 0.05, generator=gen)


@pytest.fixture(scope="module")
def sac_setup(tmp_path_factory) -> tuple[AttentionResNet, Path, Path, list[Path]]:
    """A SAC-ResNet-50 (SAC in stages 3 and 4), its YAML, a weights file, two photos."""
    root = tmp_path_factory.mktemp("sac")
    yaml = root / "sac_34.yaml"
    yaml.write_text(BACKBONE_YAML)
    torch.manual_seed(0)
    model = AttentionResNet(backbone_config(config_file=yaml)).eval()
    _randomise_attention(model)
    weights = root / "weights.pth"
    torch.save(model.state_dict(), weights)
    import skimage.data

    photos = []
    for name, arr in (("astronaut", skimage.data.astronaut()), ("coffee", skimage.data.coffee())):
        img = Image.fromarray(arr)
        img.thumbnail((144, 144))
        photos.append(root / f"{name}.jpg")
        img.save(photos[-1])
    return model, yaml, weights, photos


def test_sac_maps_have_the_blocks_contexts(sac_setup) -> None:
    model, _, _, photos = sac_setup
    images = [load_rgb(p) for p in photos]
    per_image = sac_maps(model, images, INPUT)
    blocks = sac_modules(model)
    assert len(per_image) == 2 and [m.name for m in per_image[0]] == [n for n, _ in blocks]
    for maps, (_, module) in zip(per_image[0], blocks):
        k = module.num_contexts
        assert maps.alpha.shape[0] == maps.beta.shape[0] == maps.num_contexts == k
        h, w = maps.alpha.shape[1:]
        assert maps.input_norm.shape == maps.context_norm.shape == maps.output_norm.shape == (h, w)
        np.testing.assert_allclose(maps.alpha.reshape(k, -1).sum(axis=1), 1,
                                   rtol=1e-4)  # softmax over N
        assert maps.context_norm.std() > 0 and maps.input_norm.std() > 0
    assert [m.alpha.shape[0] for m in per_image[0]] == [4, 8]  # widths 128, 256 with l = 32
    # the two images give different maps
    assert not np.allclose(per_image[0][1].alpha, per_image[1][1].alpha)
    assert not any(m._forward_hooks for _, m in blocks)  # hooks removed


def test_attention_pictures(sac_setup, tmp_path: Path) -> None:
    model, _, _, photos = sac_setup
    paths = save_attention_maps(model, photos[:1], tmp_path, INPUT)
    assert [p.name for p in paths] == ["astronaut_layer2_3_alpha.png",
                                       "astronaut_layer2_3_norms.png",
                                       "astronaut_layer3_5_alpha.png",
                                       "astronaut_layer3_5_norms.png"]
    for p in paths:
        img = _png(p)
        assert min(img.shape[:2]) > 100 and _not_flat(img)


def test_identity_sac_block_has_zero_context(tmp_path: Path) -> None:
    cfg = backbone_config(config_file=None,
                          overrides=["attention.type=sac", "attention.stages=[4]"])
    model = AttentionResNet(cfg).eval()  # untouched: W_rho = 0
    img = Image.fromarray((np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8))
    maps = sac_maps(model, [img], (64, 64))[0][0]
    assert not maps.context_norm.any()
    np.testing.assert_allclose(maps.output_norm, maps.input_norm, rtol=1e-5)


def test_beta_similarity_with_and_without_softmax(sac_setup) -> None:
    model, _, _, photos = sac_setup
    before = [m.softmax_beta for _, m in sac_modules(model)]
    sims = beta_similarities(model, [load_rgb(p) for p in photos], INPUT, max_positions=64)
    assert [m.softmax_beta for _, m in sac_modules(model)] == before  # switch restored
    assert list(sims) == [n for n, _ in sac_modules(model)]
    for pair in sims.values():
        assert len(pair[False]) == len(pair[True]) > 0
        assert np.all(np.abs(pair[False]) <= 1
                      + 1e-5) and np.all(pair[True] >= -1e-6)  # softmax: > 0
        assert not np.allclose(pair[False], pair[True])
    first = sims[next(iter(sims))]  # stage 3: 12 x 12 = 144 positions, 64 sampled per image
    assert len(first[False]) == 2 * 64 * 63 // 2
    assert first[True].mean() > first[False].mean()  # softmax makes positions alike


def test_pairwise_cosine_and_softmax_on_random_vectors() -> None:
    rng = np.random.default_rng(0)
    beta = rng.normal(size=(300, 8))
    raw = pairwise_cosine(beta, max_positions=100, rng=np.random.default_rng(1))
    soft = pairwise_cosine(np.exp(beta) / np.exp(beta).sum(1, keepdims=True), max_positions=100,
                           rng=np.random.default_rng(1))
    assert raw.shape == soft.shape == (100 * 99 // 2,)
    assert abs(raw.mean()) < 0.05 and soft.mean() > 0.5
    v = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(pairwise_cosine(v), [1.0, 0.0, 0.0], atol=1e-6)


def test_beta_similarity_picture(sac_setup, tmp_path: Path) -> None:
    model, _, _, photos = sac_setup
    paths = save_beta_similarity(model, photos[:1], tmp_path / "fig3.png", INPUT, max_positions=64)
    assert paths == [tmp_path / "fig3.png"]
    img = _png(paths[0])
    assert img.shape[1] == 2 * 360 and _not_flat(img)  # one panel per SAC block


def test_backbone_without_sac_is_refused() -> None:
    with pytest.raises(VisError, match="no SAC block"):
        load_sac_backbone("gc_resnet50", "none")


def test_hoi_vis_attention_and_beta_commands(sac_setup, tmp_path: Path, capsys) -> None:
    model, yaml, weights, photos = sac_setup
    common = ["--backbone", str(yaml), "--weights", str(weights), "--input-size", "96", "96"]
    assert hoi_main(["vis", "attention", *common, "--image", str(photos[1]), "--out",
                     str(tmp_path / "att")]) == 0
    written = sorted(p.name for p in (tmp_path / "att").iterdir())
    assert written == ["coffee_layer2_3_alpha.png", "coffee_layer2_3_norms.png",
                       "coffee_layer3_5_alpha.png", "coffee_layer3_5_norms.png"]
    # the loaded weights are the randomised ones: the SAC context is not zero
    loaded = load_sac_backbone(yaml, weights)
    maps = sac_maps(loaded, [load_rgb(photos[1])], INPUT)[0]
    reference = sac_maps(model, [load_rgb(photos[1])], INPUT)[0]
    np.testing.assert_allclose(maps[1].context_norm, reference[1].context_norm, rtol=1e-4)
    out = tmp_path / "beta" / "fig3.png"
    assert hoi_main(["vis", "beta-similarity", *common, "--image", *map(str, photos), "--out",
                     str(out),
                     "--max-positions", "32"]) == 0
    assert _not_flat(_png(out))
    assert hoi_main(["vis", "attention", "--backbone", str(yaml), "--weights",
                     str(tmp_path / "missing.pth"),
                     "--image", str(photos[0]), "--out", str(tmp_path)]) == 2
    assert "missing.pth" in capsys.readouterr().err
