"""Pictures written as PNG files (matplotlib Agg, never a window): HOI detections on images,
the SAC attention and norm maps (paper Fig. 4, 5), the beta similarity histograms (Fig. 3) and
precision-recall curves. Each ``save_*`` function returns the list of paths it wrote."""

from .attention import (
    SACMaps,
    beta_similarities,
    load_sac_backbone,
    sac_maps,
    save_attention_maps,
    save_beta_similarity,
)
from .curves import save_pr_curves
from .hoi_drawing import VisError, render_hoi_image, save_detection_images

__all__ = [
    "SACMaps", "VisError", "beta_similarities", "load_sac_backbone", "render_hoi_image", "sac_maps",
    "save_attention_maps", "save_beta_similarity", "save_detection_images", "save_pr_curves",
]
