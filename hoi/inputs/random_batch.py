"""A random batch shaped like the real ones, for benchmarks and checks that need no files:
Table XI's heads see 16 images of 1024 x 25 x 25 maps with a few humans and objects each."""

from __future__ import annotations

import numpy as np
import torch

from hoi.data.metadata import NUM_OBJECTS, NUM_VERBS, PERSON_OBJECT
from hoi.inputs.dataset import collate


def random_batch(images: int, humans: int, objects: int, seed: int = 0, channels: int = 1024,
                 map_size: int = 25, labels: bool = False) -> dict[str, torch.Tensor]:
    """``images`` random images as :func:`~hoi.inputs.dataset.collate` makes them: ``humans``
    humans and ``objects`` other objects each, the humans appended to the objects (``humans x
    (objects + humans)`` pairs per image), boxes in the annotation convention, float32 maps in
    [0, 1); with ``labels``, random multi-hot verb labels (5 %)."""
    g = np.random.default_rng(seed)
    items = []
    for i in range(images):
        w, h = int(g.integers(300, 641)), int(g.integers(300, 641))
        k = humans + objects
        lo = g.uniform(0, 0.8, (k, 2)) * [w, h]
        hi = lo + g.uniform(0.05, 1.0, (k, 2)) * ([w, h] - lo)
        boxes = np.concatenate([lo + 1, hi], 1).astype(np.float32)
        scores = g.uniform(0.6, 1.0, k).astype(np.float32)
        classes = g.choice([c for c in range(NUM_OBJECTS) if c != PERSON_OBJECT], objects)
        order = np.r_[humans:k, 0:humans]  # the other objects, then the humans
        ph, po = torch.meshgrid(torch.arange(humans), torch.arange(k), indexing="ij")
        item = {
            "index": i,
            "features": torch.from_numpy(g.random((channels, map_size, map_size), np.float32)),
            "image_size": torch.tensor([w, h], dtype=torch.float32),
            "boxes_h": torch.from_numpy(boxes[:humans]),
            "scores_h": torch.from_numpy(scores[:humans]),
            "boxes_o": torch.from_numpy(boxes[order]), "scores_o": torch.from_numpy(scores[order]),
            "labels_o": torch.from_numpy(np.concatenate([classes, [PERSON_OBJECT] * humans])),
            "pair_h": ph.reshape(-1), "pair_o": po.reshape(-1)}
        if labels:
            item["labels"] = torch.from_numpy(
                (g.random((humans * k, NUM_VERBS)) > 0.95).astype(np.float32))
        items.append(item)
    return collate(items)
