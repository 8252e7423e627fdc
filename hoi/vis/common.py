"""Figures without a window: matplotlib's Agg canvas, no pyplot state, PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def new_figure(width_px: float, height_px: float, dpi: int = DPI) -> Figure:
    """A figure of ``width_px`` x ``height_px`` pixels on an Agg canvas (never shown)."""
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, **kwargs) -> Path:
    """Write ``fig`` as PNG (creating the folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", **kwargs)
    return path


def normalise_map(values: np.ndarray) -> np.ndarray:
    """Min-max scale one map (H, W) to [0, 1]; a constant map becomes all zeros."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def safe_stem(name: str) -> str:
    """A file-name-safe version of a module or image name."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")
