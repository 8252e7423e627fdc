"""Inference of an interaction head: pair scores -> HOI rows
(docs/architecture.md#data-flow-from-files-to-map).

Every pair gets one row per HOI class of its object's class (the 117 verb scores mapped to
the 600 HOIs through the object -> verb table), as the official code writes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from hoi.config import AT_LEAST_ONE, Check
from hoi.data.metadata import hico_metadata
from hoi.engine.precision import autocast
from hoi.evaluation import HOIResults
from hoi.inputs.dataset import to_device
from hoi.models.heads.base import InteractionHead


@dataclass
class InferenceConfig:
    RANGES: ClassVar[dict[str, Check]] = {
        "batch_size": AT_LEAST_ONE,
        "min_score": Check(ge=0, le=1, why="scores are in [0, 1]; 0 keeps every row"),
        "max_per_image": Check(ge=1, why="null: every row"),
    }

    batch_size: int = 64  # images per process (no gradients held: larger than training's)
    min_score: float = 0.0  # rows with a lower score are not written
    max_per_image: int | None = None  # keep the top rows of each image (None: all)


NOT_ALLOWED = -1.0  # the packed score of a verb the pair's object class does not allow
PAIR_COLUMNS = 10  # image index, boxes_h (4), boxes_o (4), object class


def pair_scores(model: InteractionHead, batch: dict[str, torch.Tensor],
                amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Everything a batch's rows need, as one float32 tensor on its device, (P, V + 10): the
    final score of each verb (:data:`NOT_ALLOWED` where the object class forbids it), then the
    pair's annotation image index, human box, object box and object class. One tensor, so
    that one copy brings a batch to the host and nothing on the device waits for it (image
    indices are exact in float32 below 2**24)."""
    with autocast(batch["features"].device, amp_dtype):
        out = model(batch)
    log_p, valid = model.log_scores(out, batch)
    score = torch.where(valid, log_p.float().exp(), torch.full_like(log_p, NOT_ALLOWED,
                                                                    dtype=torch.float32))
    ph, po = batch["pair_h"], batch["pair_o"]
    return torch.cat([
        score,
        batch["index"][batch["pair_image"]].float()[:, None],
        batch["boxes_h"][ph].float(), batch["boxes_o"][po].float(),
        batch["labels_o"][po].float()[:, None],
    ], dim=1)


def _top_per_image(image: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: the ``k`` best-scored rows of each image (ties: the earlier row)."""
    order = np.lexsort((-score, image))  # by image, then by descending score, stable
    img = image[order]
    rank = np.arange(len(img)) - np.searchsorted(img, img, side="left")
    keep = np.zeros(len(image), dtype=bool)
    keep[order[rank < k]] = True
    return keep


def rows_of_pairs(packed: np.ndarray, cfg: InferenceConfig) -> dict[str, np.ndarray]:
    """HOI rows (image_index, boxes_h, boxes_o, object, hoi, score) from the packed pair scores
    of :func:`pair_scores` (on the host): one row per pair and allowed verb, in pair order."""
    num_verbs = packed.shape[1] - PAIR_COLUMNS
    score_all, info = packed[:, :num_verbs], packed[:, num_verbs:]
    pair, verb = np.nonzero(score_all != NOT_ALLOWED)
    score = score_all[pair, verb]
    obj = info[pair, 9].astype(np.int64)
    rows = {
        "image_index": info[pair, 0].astype(np.int64),
        "boxes_h": info[pair, 1:5], "boxes_o": info[pair, 5:9],
        "object": obj,
        "hoi": hico_metadata().pair_to_hoi[obj, verb].astype(np.int64),
        "score": score.astype(np.float32),
    }
    keep = score >= cfg.min_score
    if cfg.max_per_image is not None:
        keep &= _top_per_image(rows["image_index"], np.where(keep, score, -np.inf),
                               cfg.max_per_image)
    return {k: v[keep] for k, v in rows.items()}


def batch_rows(model: InteractionHead, batch: dict[str, torch.Tensor], cfg: InferenceConfig,
               amp_dtype: torch.dtype | None = None) -> dict[str, np.ndarray]:
    """HOI rows of one batch, as numpy arrays: every allowed verb of every pair, then the
    ``min_score`` and ``max_per_image`` filters."""
    return rows_of_pairs(pair_scores(model, batch, amp_dtype).cpu().numpy(), cfg)


def concat_rows(parts: Iterable[dict[str, np.ndarray]],
                filenames: list[str] | None = None) -> HOIResults:
    """HOIResults from row dicts (numpy), in order."""
    parts = list(parts)
    if not parts:
        return HOIResults.empty(filenames)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return HOIResults(cat["image_index"], cat["boxes_h"], cat["boxes_o"], cat["object"], cat["hoi"],
                         cat["score"], filenames)


@torch.inference_mode()
def predict(model: InteractionHead, loader: Iterable[dict[str, torch.Tensor]], device: torch.device,
            cfg: InferenceConfig, amp_dtype: torch.dtype | None = None,
            progress: bool = False) -> list[dict[str, np.ndarray]]:
    """Rows (numpy dicts, one per batch) of every image ``loader`` gives; image_index is the
    annotation image index. Each batch's scores reach the host in one copy, started without
    waiting (pinned memory on a GPU) and read one batch later, while the device works on the
    next."""
    model.eval()
    parts: list[dict[str, np.ndarray]] = []
    pending: tuple[torch.Tensor, torch.cuda.Event | None] | None = None

    def collect(item: tuple[torch.Tensor, torch.cuda.Event | None]) -> None:
        host, done = item
        if done is not None:
            done.synchronize()
        parts.append(rows_of_pairs(host.numpy(), cfg))

    for batch in tqdm(loader, desc="inference", leave=False, disable=not progress,
                      dynamic_ncols=True):
        packed = pair_scores(model, to_device(batch, device), amp_dtype)
        if device.type == "cuda":
            host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
            host.copy_(packed, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host, done = packed, None
        if pending is not None:
            collect(pending)
        pending = (host, done)
    if pending is not None:
        collect(pending)
    return parts
