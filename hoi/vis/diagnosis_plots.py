"""Pictures of an HOI error analysis (``hoi diagnose``), drawn from the diagnosis dicts of
:meth:`hoi.evaluation.diagnose.Diagnosis.to_dict` (so they can be redrawn from diagnosis.json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hoi.evaluation.diagnose import ERROR_TYPES
from hoi.vis.common import new_figure, save_figure

COLORS = {"true_positive": "#4daf4a", "duplicate": "#377eb8", "wrong_verb": "#984ea3",
          "wrong_object": "#a65628", "mis_grouping": "#f781bf", "human_loc": "#ff7f00",
          "object_loc": "#e6c200", "both_loc": "#e41a1c", "class_and_loc": "#999999",
          "background": "#333333"}
SPLIT_COLORS = {"full": "#1f77b4", "rare": "#ff7f0e", "non_rare": "#2ca02c"}
SPLIT_TITLES = {"full": "Full", "rare": "Rare", "non_rare": "Non-Rare"}
PAIR_COLORS = ("#1f77b4", "#ff7f0e")
TOP_CLASSES = 12  # classes shown in the comparison picture


def _points(value: float | None) -> float:
    """A fraction in percentage points; None (an empty split) becomes NaN (no bar)."""
    return float("nan") if value is None else 100 * value


def plot_breakdown(diag: Mapping[str, Any], title: str = "") -> Figure:
    """Two panels: false positives per error type (counts) and the mAP gain, in points, of
    removing each type (Full / Rare / Non-Rare)."""
    fig = new_figure(1000, 420)
    y = np.arange(len(ERROR_TYPES))[::-1]
    ax = fig.add_subplot(1, 2, 1)
    counts = [diag["false_positives"][t] for t in ERROR_TYPES]
    ax.barh(y, counts, color=[COLORS[t] for t in ERROR_TYPES])
    for yy, n in zip(y, counts):
        ax.text(n, yy, f" {n}", va="center", fontsize=7)
    ax.set_yticks(y, ERROR_TYPES, fontsize=8)
    ax.set_xlabel("false positives")
    ax.set_xlim(0, max(max(counts), 1) * 1.2)
    ax.set_title(f"false positives by type (TP {diag['true_positives']}, missed GT "
                 f"{diag['missed']})", fontsize=9)
    ax = fig.add_subplot(1, 2, 2)
    height = 0.27
    for k, split in enumerate(("full", "rare", "non_rare")):
        gains = [_points(diag["map_gain_if_removed"][t][split]) for t in ERROR_TYPES]
        ax.barh(y + (1 - k) * height, gains, height, color=SPLIT_COLORS[split],
                label=SPLIT_TITLES[split])
    ax.set_yticks(y, ERROR_TYPES, fontsize=8)
    ax.set_xlabel("mAP gain if removed (points)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    m = diag["map"]
    ax.set_title(f"mAP {_points(m['full']):.2f} / {_points(m['rare']):.2f} / "
                 f"{_points(m['non_rare']):.2f} (Full / Rare / Non-Rare)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_score_ranking(diag: Mapping[str, Any], title: str = "") -> Figure:
    """Stacked shares of true positives and of each error type along the score ranking (the
    relative rank of a detection within its class: 0 = its best-scored detection)."""
    ranking = diag["score_ranking"]
    edges = np.asarray(ranking["relative_rank_edges"])
    keys = ["true_positive", *ERROR_TYPES]
    counts = np.array([ranking[k] for k in keys], dtype=np.float64)  # (10, bins)
    totals = counts.sum(axis=0)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = new_figure(820, 420)
    ax = fig.add_subplot(1, 1, 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    bottom = np.zeros(len(centers))
    for k, key in enumerate(keys):
        ax.bar(centers, share[k], width * 0.95, bottom=bottom, color=COLORS[key], label=key)
        bottom += share[k]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("relative rank within the HOI class (0 = highest score)")
    ax.set_ylabel("share of detections")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(title or "outcome of the detections along the score ranking", fontsize=9)
    fig.tight_layout()
    return fig


def plot_comparison(main: Mapping[str, Any], other: Mapping[str, Any],
                    changes: Sequence[Mapping[str, Any]],
                    labels: Sequence[str] = ("results", "compare")) -> Figure:
    """Two result files side by side: the Full mAP gain of removing each error type, and the
    classes whose AP changed most (``changes`` from :func:`hoi.evaluation.diagnose.ap_changes`)."""
    fig = new_figure(1100, 460)
    y = np.arange(len(ERROR_TYPES))[::-1]
    ax = fig.add_subplot(1, 2, 1)
    height = 0.4
    for k, (d, label) in enumerate(zip((main, other), labels)):
        gains = [_points(d["map_gain_if_removed"][t]["full"]) for t in ERROR_TYPES]
        ax.barh(y + (0.5 - k) * height, gains, height, color=PAIR_COLORS[k],
                label=f"{label} (mAP {_points(d['map']['full']):.2f})")
    ax.set_yticks(y, ERROR_TYPES, fontsize=8)
    ax.set_xlabel("Full mAP gain if removed (points)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("where each file loses mAP", fontsize=9)
    ax = fig.add_subplot(1, 2, 2)
    yc = np.arange(len(changes))[::-1]
    deltas = [100 * c["change"] for c in changes]
    ax.barh(yc, deltas, color=[PAIR_COLORS[0] if d >= 0 else PAIR_COLORS[1] for d in deltas])
    ax.set_yticks(yc, [f"{c['hoi']}: {c['name']}" for c in changes], fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"AP {labels[0]} - AP {labels[1]} (points)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"the {len(changes)} classes whose AP changed most", fontsize=9)
    fig.tight_layout()
    return fig


def save_diagnosis_figures(main: Mapping[str, Any], out_dir: str | Path,
                           other: Mapping[str, Any] | None = None,
                           changes: Sequence[Mapping[str, Any]] = (),
                           labels: Sequence[str] = ("results", "compare")) -> list[Path]:
    """Write ``breakdown.png`` and ``score_ranking.png`` (and ``compare.png`` with ``other``,
    plus the breakdown of the other file, ``breakdown_compare.png``) into ``out_dir``."""
    out_dir = Path(out_dir)
    written = [save_figure(plot_breakdown(main, labels[0]), out_dir / "breakdown.png"),
               save_figure(plot_score_ranking(main, f"{labels[0]}: outcome of the detections along "
                                                    "the score "
                                              "ranking"), out_dir / "score_ranking.png")]
    if other is not None:
        written.append(save_figure(plot_breakdown(other, labels[1]),
                                   out_dir / "breakdown_compare.png"))
        written.append(save_figure(plot_comparison(main, other, changes, labels),
                                   out_dir / "compare.png"))
    return written
