"""Evaluation results: per-class AP and recall per setting, mAP over Full / Rare / Non-Rare,
and their JSON, CSV and table forms."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SETTINGS = ("default", "known_object")
SETTING_TITLES = {"default": "Default", "known_object": "Known-Object"}


@dataclass(frozen=True)
class SettingResult:
    """One setting: ``ap`` and ``recall`` (C,) float64 per HOI class (fractions), ``rare`` and
    ``non_rare`` the class indices of the two splits. ``classes`` (optional) restricts the Full
    mAP to these class indices (``rare`` / ``non_rare`` are then subsets of it)."""

    ap: np.ndarray
    recall: np.ndarray
    rare: np.ndarray
    non_rare: np.ndarray
    classes: np.ndarray | None = None

    @property
    def full(self) -> float:
        return float(np.mean(self.ap if self.classes is None else self.ap[self.classes]))

    @property
    def rare_map(self) -> float:
        return float(np.mean(self.ap[self.rare])) if len(self.rare) else float("nan")

    @property
    def non_rare_map(self) -> float:
        return float(np.mean(self.ap[self.non_rare])) if len(self.non_rare) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"full": self.full, "rare": self.rare_map, "non_rare": self.non_rare_map,
                "ap": self.ap.tolist(), "recall": self.recall.tolist(),
                "num_classes": {"full": int(len(self.ap) if self.classes is None
                                            else len(self.classes)),
                                "rare": int(len(self.rare)), "non_rare": int(len(self.non_rare))},
                "mean_recall": {"full": float(np.mean(self.recall)),
                                "rare": float(np.mean(self.recall[self.rare])) if len(self.rare)
                                else None,
                                "non_rare": float(np.mean(self.recall[self.non_rare]))
                                if len(self.non_rare) else None}}


@dataclass(frozen=True)
class EvalResult:
    """Results of one evaluation, keyed by setting name ("default", "known_object")."""

    settings: dict[str, SettingResult]
    info: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, setting: str) -> SettingResult:
        return self.settings[setting]

    def to_dict(self) -> dict[str, Any]:
        """``{"default": {"full", "rare", "non_rare", "ap", "recall", ...}, ...}`` (fractions)."""
        out: dict[str, Any] = {name: r.to_dict() for name, r in self.settings.items()}
        if self.info:
            out["info"] = self.info
        return out

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    def save_per_class_csv(self, path: str | Path, class_names: Sequence[str]) -> None:
        """One row per class: index, name, rare, then AP and recall for every setting."""
        names = list(self.settings)
        first = self.settings[names[0]]
        rare = np.zeros(len(first.ap), dtype=bool)
        rare[first.rare] = True
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["hoi", "name",
                        "rare"] + [f"{s}_{k}" for s in names for k in ("ap", "recall")])
            for c in range(len(first.ap)):
                row: list[Any] = [c, class_names[c], int(rare[c])]
                for s in names:
                    row += [repr(float(self.settings[s].ap[c])),
                            repr(float(self.settings[s].recall[c]))]
                w.writerow(row)

    def table(self) -> str:
        """A text table of mAP (percent) per setting: Full / Rare / Non-Rare."""
        lines = [f"{'setting':<14} {'Full':>8} {'Rare':>8} {'Non-Rare':>9}", "-" * 42]
        for name, r in self.settings.items():
            lines.append(f"{SETTING_TITLES.get(name, name):<14} {100 * r.full:>8.2f} "
                         f"{100 * r.rare_map:>8.2f} {100 * r.non_rare_map:>9.2f}")
        return "\n".join(lines)
