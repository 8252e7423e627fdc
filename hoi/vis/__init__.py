"""Pictures written as PNG files (matplotlib Agg, never a window): HOI detections on images,
the SAC attention and norm maps (paper Fig. 4, 5), the beta similarity histograms (Fig. 3),
precision-recall curves and error analyses. Each ``save_*`` function returns the list of paths
it wrote. The names below are imported on first use, so that the pictures without a network
(curves, diagnoses) do not pay for importing PyTorch."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SACMaps": "attention", "beta_similarities": "attention", "load_sac_backbone": "attention",
    "sac_maps": "attention", "save_attention_maps": "attention",
    "save_beta_similarity": "attention",
    "save_pr_curves": "pr_plots", "save_diagnosis_figures": "diagnosis_plots",
    "VisError": "hoi_drawing", "render_hoi_image": "hoi_drawing",
    "save_detection_images": "hoi_drawing",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
