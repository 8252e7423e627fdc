"""A tiny synthetic COCO-format instances set: coloured rectangles and discs on a noisy
background, with boxes and polygon masks (CPU smoke runs of the detectors; no real data).

Layout written (what Detectron2's ``register_coco_instances`` reads):
``<out>/images/synth_%04d.jpg`` and ``<out>/instances.json`` with ``images``, ``annotations``
(``bbox`` [x, y, w, h], ``segmentation`` [[x1, y1, x2, y2, ...]], ``area``, ``iscrowd`` 0) and
``categories`` (1 ``rectangle``, 2 ``disc``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = [{"id": 1, "name": "rectangle"}, {"id": 2, "name": "disc"}]


@dataclass(frozen=True)
class SynthSettings:
    images: int = 4
    height: int = 128
    width: int = 160
    objects_per_image: int = 3
    min_side: int = 24  # smallest object side in pixels
    max_side: int = 56
    disc_points: int = 16  # vertices of a disc's polygon
    noise: float = 20.0  # std of the background noise (0-255 units)
    seed: int = 0


def _polygon(kind: int, x0: float, y0: float, w: float, h: float,
             points: int) -> list[float]:
    """Polygon (x1, y1, x2, y2, ...) of a rectangle (kind 1) or an ellipse (kind 2)."""
    if kind == 1:
        return [x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]
    cx, cy = x0 + w / 2, y0 + h / 2
    out: list[float] = []
    for k in range(points):
        a = 2 * math.pi * k / points
        out += [cx + w / 2 * math.cos(a), cy + h / 2 * math.sin(a)]
    return out


def _area(poly: list[float]) -> float:
    x, y = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def write_synthetic_coco(out: str | Path, settings: SynthSettings = SynthSettings()) -> Path:
    """Write the set under ``out``; returns the path of ``instances.json``."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(settings.images):
        h, w = settings.height, settings.width
        pixels = 128 + rng.normal(0, settings.noise, (h, w, 3))
        img = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(settings.objects_per_image):
            kind = int(rng.integers(1, 3))
            bw, bh = rng.integers(settings.min_side, settings.max_side + 1, size=2)
            x0 = float(rng.integers(0, w - bw))
            y0 = float(rng.integers(0, h - bh))
            poly = _polygon(kind, x0, y0, float(bw), float(bh), settings.disc_points)
            colour = (230, 40, 40) if kind == 1 else (40, 60, 230)
            draw.polygon(list(zip(poly[0::2], poly[1::2])), fill=colour)
            xs, ys = poly[0::2], poly[1::2]
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": kind,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "segmentation": [poly], "area": _area(poly), "iscrowd": 0,
            })
        name = f"synth_{i:04d}.jpg"
        img.save(out / "images" / name, quality=95)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
    path = out / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": CATEGORIES}))
    return path


def write_calibrated_resnet(depth: int, image_dir: str | Path, out: str | Path,
                            mean: tuple[float, float, float], std: tuple[float, float, float],
                            passes: int = 3) -> Path:
    """A plain ResNet-``depth`` state dict whose BatchNorm statistics fit the images of
    ``image_dir`` (random weights; the statistics are averaged over ``passes`` train-mode
    forwards of all images, normalised by ``mean`` / ``std`` in 0-255 RGB units).

    A stand-in for ImageNet weights in smoke runs: with frozen BatchNorm, a ResNet whose
    statistics are those of its random initialisation (mean 0, variance 1) blows its
    activations up through 50 layers and the detector diverges at once.
    """
    import torch

    from hoi.models.backbones import backbone_config, create_backbone

    model = create_backbone(config=backbone_config(f"resnet{depth}"))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the passes
    files = sorted(Path(image_dir).glob("*.jpg"))
    batch = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), np.float32))
                         for f in files]).permute(0, 3, 1, 2)
    batch = (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(batch)
    out = Path(out)
    torch.save(model.state_dict(), out)
    return out
