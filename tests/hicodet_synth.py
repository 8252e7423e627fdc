"""Small synthetic HICO-DET annotation dicts for the data and evaluation tests."""

from __future__ import annotations

import numpy as np

from hoi.data import build_instances, hico_metadata


def random_box(rng: np.random.Generator, width: int, height: int) -> list[float]:
    """An integer 1-based box inside [1, width] x [1, height]."""
    x1, x2 = sorted(rng.integers(1, width + 1, size=2))
    y1, y2 = sorted(rng.integers(1, height + 1, size=2))
    return [float(x1), float(y1), float(x2), float(y2)]


def make_instances(rng: np.random.Generator, num_images: int = 8, max_pairs: int = 5,
                   hois: list[int] | None = None, empty: tuple[int, ...] = (1,)) -> dict:
    """A valid annotation dict; images listed in ``empty`` get no pair; HOIs drawn from ``hois``."""
    meta = hico_metadata()
    pool = list(range(len(meta.hoi_names))) if hois is None else hois
    names, sizes, pairs = [], [], []
    for i in range(num_images):
        w, h = int(rng.integers(50, 200)), int(rng.integers(50, 200))
        p = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
        n = 0 if i in empty else int(rng.integers(1, max_pairs + 1))
        for _ in range(n):
            c = int(rng.choice(pool))
            p["boxes_h"].append(random_box(rng, w, h))
            p["boxes_o"].append(random_box(rng, w, h))
            p["hoi"].append(c)
            p["object"].append(int(meta.hoi_object[c]))
            p["verb"].append(int(meta.hoi_verb[c]))
        names.append(f"HICO_test2015_{i + 1:08d}.jpg")
        sizes.append((w, h))
        pairs.append(p)
    return build_instances(names, sizes, pairs)
