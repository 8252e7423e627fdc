"""Small HICO-DET caches for the VSGNet tests: annotations, detections (the GT boxes plus a
few low-score distractors) and random feature maps, written with the project's own writers;
plus the checks that refuse files which do not belong together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hoi.config import ConfigError, to_dict
from hoi.data import build_instances, hico_metadata, save_annotations
from hoi.data.cache import CacheError, FeatureWriter, ImageProposals, write_proposals
from hoi.models.backbones import backbone_config
from hoi.provenance import ProvenanceMismatch, annotation_fingerprint

ARCH = "sac_resnet50"
CHANNELS = 16
MAP = 8
# small heads so that a CPU thread trains them in seconds
TINY_MODEL = [
    f"model.in_channels={CHANNELS}", "model.block_channels=8", "model.roi_size=3",
    "model.head_hidden=32",
    "model.head_channels=32", "model.spatial_size=20", "model.spatial_channels=[8,8]",
]


def pick_hois(rng: np.random.Generator, k: int) -> list[int]:
    meta = hico_metadata()
    return sorted(rng.choice(len(meta.hoi_names), size=k, replace=False).tolist())


def make_split(root: Path, split: str, num_images: int = 8, seed: int = 0, arch: str = ARCH,
               distractors: int = 1, hois: list[int] | None = None) -> dict:
    """Write instances_/detections_/features_ files of a tiny split under ``root`` (the layout
    of configs/hico/base.yaml); return the annotation dict."""
    rng = np.random.default_rng(seed)
    meta = hico_metadata()
    hois = hois or pick_hois(np.random.default_rng(123), 6)
    names, sizes, records, dets = [], [], [], []
    for i in range(num_images):
        w, h = int(rng.integers(120, 240)), int(rng.integers(120, 240))
        humans = [_box(rng, w, h) for _ in range(int(rng.integers(1, 3)))]
        objects = [_box(rng, w, h) for _ in range(int(rng.integers(1, 3)))]
        rec = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
        obj_class = [int(meta.hoi_object[rng.choice(hois)]) for _ in objects]
        for hb in humans:
            for ob, oc in zip(objects, obj_class):
                if rng.random() < 0.3:
                    continue
                options = [c for c in hois if meta.hoi_object[c] == oc]
                for c in rng.choice(options, size=min(len(options), int(rng.integers(1, 3))),
                                    replace=False):
                    rec["boxes_h"].append(hb)
                    rec["boxes_o"].append(ob)
                    rec["hoi"].append(int(c))
                    rec["object"].append(oc)
                    rec["verb"].append(int(meta.hoi_verb[c]))
        boxes = humans + objects + [_box(rng, w, h) for _ in range(distractors)]
        labels = [49] * len(humans) + obj_class + [int(rng.integers(0, 80))] * distractors
        scores = [1.0] * (len(humans) + len(objects)) + [0.45] * distractors
        dets.append(ImageProposals(np.array(boxes), np.array(scores), np.array(labels)))
        names.append(f"HICO_{split}_{i + 1:08d}.jpg")
        sizes.append((w, h))
        records.append(rec)
    anno = build_instances(names, sizes, records)
    root.mkdir(parents=True, exist_ok=True)
    save_annotations(anno, root / f"instances_{split}.json")
    (root / "cache").mkdir(parents=True, exist_ok=True)
    fingerprint = annotation_fingerprint(root / f"instances_{split}.json", anno)
    write_proposals(root / "cache" / f"detections_{split}.h5", names, dets,
                    {"kind": "detections", "source": "gt boxes (test)", "annotation": fingerprint})
    prov = {"backbone": to_dict(backbone_config(arch)), "weights_sha256": "0" * 64,
            "weights_seed": None,
            "input_size": [400, 400], "normalization": "imagenet", "layer": "stage4",
            "dtype": "float16",
            "annotation": fingerprint}
    writer = FeatureWriter(root / "cache" / arch / f"features_{split}.h5", names, sizes,
                           (CHANNELS, MAP, MAP), prov)
    for i in range(num_images):
        writer.write(i, rng.standard_normal((CHANNELS, MAP, MAP)).astype(np.float32))
    writer.close()
    return anno


def _box(rng: np.random.Generator, w: int, h: int) -> list[float]:
    bw, bh = int(rng.integers(w // 5, w // 2)), int(rng.integers(h // 5, h // 2))
    x1, y1 = int(rng.integers(1, w - bw)), int(rng.integers(1, h - bh))
    return [float(x1), float(y1), float(x1 + bw - 1), float(y1 + bh - 1)]


def run_overrides(root: Path, out: Path, **extra) -> list[str]:
    """key=value overrides of a tiny CPU run on the caches under ``root``."""
    base = {
        "data.root": str(root), "data.workers": 0, "data.val_fraction": 0.0, "device": "cpu",
        "optim.batch_size": 4, "optim.epochs": 3, "optim.lr": 0.05, "model.spatial_lr": 0.05,
        "optim.lr_factor_epochs": "[2,2]", "optim.lr_factor": 2.0, "progress": False,
        "tensorboard": False,
        "output_dir": str(out), "log_every": 1, "test.batch_size": 4,
    }
    base.update(extra)
    return TINY_MODEL + [f"{k}={v}" for k, v in base.items()]


# ----------------------------------------------------------------- checks of bad input
def _cfg(root: Path, out: Path, **extra):
    from hoi.hoi_config import load_config

    return load_config(None, run_overrides(root, out, **extra))


def test_files_of_other_images_are_refused(tmp_path: Path) -> None:
    from hoi.hoi_config import open_run_split as open_split

    make_split(tmp_path, "train2015", 4, seed=0)
    other = tmp_path / "other"
    make_split(other, "train2015", 5, seed=1)
    # annotations of 5 images with detections of 4 images that have other names
    (tmp_path / "instances_train2015.json").write_text(
        (other / "instances_train2015.json").read_text())
    data = json.loads((tmp_path / "instances_train2015.json").read_text())
    data["filenames"] = [n.replace("HICO_", "HICO_x") for n in data["filenames"]]
    (tmp_path / "instances_train2015.json").write_text(json.dumps(data))
    with pytest.raises(ProvenanceMismatch, match=r"detections_train2015.h5 was made from another "
                                                 r"annotation file "
                                                 r"than .*instances_train2015.json: field "
                                                 r"'annotation.sha256' differs "
                                                 r".*4 vs 5 images.*and 1 more"):
        open_split(_cfg(tmp_path, tmp_path / "run"), "train2015")
    # with the override the content checks still refuse what cannot work at all
    with pytest.raises(CacheError, match="does not belong to"):
        open_split(_cfg(tmp_path, tmp_path / "run", **{"data.allow_mismatch": True}), "train2015")


def test_features_of_another_backbone_are_refused(tmp_path: Path) -> None:
    from hoi.hoi_config import open_run_split as open_split

    make_split(tmp_path, "train2015", 3, arch="resnet50")
    # the config names sac_resnet50; put the resnet50 features where it looks for them
    (tmp_path / "cache" / ARCH).mkdir(parents=True)
    (tmp_path / "cache" / "resnet50" / "features_train2015.h5").rename(
        tmp_path / "cache" / ARCH / "features_train2015.h5")
    with pytest.raises(CacheError, match=r"another backbone[^$]*attention.type: features .none., "
                                         r"this run .sac."):
        open_split(_cfg(tmp_path, tmp_path / "run"), "train2015")
    open_split(_cfg(tmp_path, tmp_path / "run", **{"data.check_backbone": False}), "train2015")


def test_unknown_config_key_names_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.spatial_lr"):
        _cfg(tmp_path, tmp_path / "run", **{"model.spatial_rl": 0.1})


def test_wrong_channel_count_is_refused(tmp_path: Path) -> None:
    from hoi.hoi_config import open_run_split as open_split

    make_split(tmp_path, "train2015", 2)
    with pytest.raises(CacheError, match="channels"):
        open_split(_cfg(tmp_path, tmp_path / "run", **{"model.in_channels": 32}), "train2015")


def test_head_values_are_refused_when_the_config_loads(tmp_path: Path) -> None:
    # a bad model.roi_pool is refused with the table's names before any file is opened or made
    refusal = r"model.roi_pool: unknown value 'x'; valid names: align, official"
    with pytest.raises(ConfigError, match=refusal):
        _cfg(tmp_path, tmp_path / "run", **{"model.roi_pool": "x"})
    assert not (tmp_path / "run").exists()
