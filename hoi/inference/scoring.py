"""Inference of an interaction head: pair scores -> HOI rows
(docs/architecture.md#data-flow-from-files-to-map).

Every pair gets one row per HOI class of its object's class (the 117 verb scores mapped to
the 600 HOIs through the object -> verb table), as the official code writes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from hoi.data.metadata import hico_metadata
from hoi.evaluation import HOIResults
from hoi.inputs.dataset import to_device
from hoi.models.heads.base import InteractionHead


@dataclass
class InferenceConfig:
    batch_size: int = 16  # images per process
    min_score: float = 0.0  # rows with a lower score are not written
    max_per_image: int | None = None  # keep the top rows of each image (None: all)


def _top_per_image(image: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    """Row indices keeping the ``k`` best-scored rows of each image."""
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(image[order], stable=True)]
    img = image[order]
    first = torch.searchsorted(img, img, right=False)
    rank = torch.arange(len(img), device=img.device) - first
    return order[rank < k]


def batch_rows(model: InteractionHead, batch: dict[str, torch.Tensor], cfg: InferenceConfig,
                     use_amp: bool = False) -> dict[str, torch.Tensor]:
    """HOI rows of one batch (on its device): image_index, boxes_h, boxes_o, object, hoi, score."""
    device = batch["features"].device
    with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
        out = model(batch)
    log_p, valid = model.log_scores(out, batch)
    pair, verb = torch.nonzero(valid, as_tuple=True)
    score = log_p[pair, verb].exp()
    obj = batch["labels_o"][batch["pair_o"][pair]]
    pair_to_hoi = torch.as_tensor(hico_metadata().pair_to_hoi.copy(), device=device)
    rows = {
        "image_index": batch["index"][batch["pair_image"][pair]],
        "boxes_h": batch["boxes_h"][batch["pair_h"][pair]],
        "boxes_o": batch["boxes_o"][batch["pair_o"][pair]],
        "object": obj,
        "hoi": pair_to_hoi[obj, verb],
        "score": score,
    }
    keep = score >= cfg.min_score
    if cfg.max_per_image is not None:
        idx = torch.nonzero(keep, as_tuple=True)[0]
        idx = idx[_top_per_image(rows["image_index"][idx], score[idx], cfg.max_per_image)]
        keep = torch.zeros_like(keep)
        keep[idx] = True
    return {k: v[keep] for k, v in rows.items()}


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
            cfg: InferenceConfig, use_amp: bool = False,
            progress: bool = False) -> list[dict[str, np.ndarray]]:
    """Rows (numpy dicts, one per batch) of every image ``loader`` gives; image_index is the
    annotation image index."""
    model.eval()
    parts = []
    for batch in tqdm(loader, desc="inference", leave=False, disable=not progress,
                      dynamic_ncols=True):
        rows = batch_rows(model, to_device(batch, device), cfg, use_amp)
        parts.append({k: v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy()
                      for k, v in rows.items()})
    return parts
