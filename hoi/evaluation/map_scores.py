"""Evaluation results: per-class AP and recall per setting, mAP over Full / Rare / Non-Rare,
and their JSON, CSV and table forms.

A split without a class (Non-Rare of an annotation whose ``non_rare`` list is empty; Rare
when ``classes="annotated"`` and no rare class has a GT pair) has no mean: its mAP is NaN in
the numbers and JSON, and :meth:`SettingResult.empty_reasons` says why wherever it is shown
(``hoi eval``'s table, ``hoi diagnose``, the training log)."""

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
SPLIT_TITLES = {"full": "Full", "rare": "Rare", "non_rare": "Non-Rare"}
SPLIT_WORDS = {"full": "", "rare": "rare ", "non_rare": "non-rare "}
NO_MEAN = "n/a"  # a table's cell for a split without a class


def empty_split_reason(split: str, annotated_only: bool = False) -> str:
    """Why the mAP of ``split`` ("full", "rare", "non_rare") is NaN: its mean runs over no class
    of the annotation (``annotated_only``: of the classes with GT pairs)."""
    words = SPLIT_WORDS[split]
    if not annotated_only:
        return f"no {words}class in this annotation (its '{split}' list is empty)"
    return (f"no {words}class has a GT pair in this annotation (the mean runs over the classes "
            "with GT pairs only)")


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
        if self.classes is not None and not len(self.classes):
            return float("nan")
        return float(np.mean(self.ap if self.classes is None else self.ap[self.classes]))

    @property
    def rare_map(self) -> float:
        return float(np.mean(self.ap[self.rare])) if len(self.rare) else float("nan")

    @property
    def non_rare_map(self) -> float:
        return float(np.mean(self.ap[self.non_rare])) if len(self.non_rare) else float("nan")

    def split_map(self, split: str) -> float:
        """The mAP of ``split``: "full", "rare" or "non_rare" (NaN for a split without a
        class)."""
        return {"full": self.full, "rare": self.rare_map, "non_rare": self.non_rare_map}[split]

    def split_classes(self, split: str) -> np.ndarray:
        """The class indices the mean of ``split`` runs over."""
        if split == "full":
            return np.arange(len(self.ap)) if self.classes is None else self.classes
        return self.rare if split == "rare" else self.non_rare

    def empty_reason(self, split: str) -> str | None:
        """Why ``split`` has no mAP (its mean runs over no class), or None when it has one."""
        if len(self.split_classes(split)):
            return None
        return empty_split_reason(split, annotated_only=self.classes is not None)

    def empty_reasons(self) -> dict[str, str]:
        """``{split: why}`` for every split without a mAP (none for a complete annotation)."""
        reasons = {s: self.empty_reason(s) for s in SPLIT_TITLES}
        return {s: r for s, r in reasons.items() if r is not None}

    def to_dict(self) -> dict[str, Any]:
        reasons = self.empty_reasons()
        return {"full": self.full, "rare": self.rare_map, "non_rare": self.non_rare_map,
                **({"empty_splits": reasons} if reasons else {}),
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

    def empty_notes(self) -> list[str]:
        """One line per split without a mAP, saying why (the same in every setting)."""
        notes: dict[str, str] = {}
        for r in self.settings.values():
            for split, why in r.empty_reasons().items():
                notes.setdefault(split, f"{SPLIT_TITLES[split]} mAP is {NO_MEAN}: {why}")
        return list(notes.values())

    def table(self) -> str:
        """A text table of mAP (percent) per setting: Full / Rare / Non-Rare; a split without
        a class shows ``n/a`` and a line below says why."""
        lines = [f"{'setting':<14} {'Full':>8} {'Rare':>8} {'Non-Rare':>9}", "-" * 42]
        for name, r in self.settings.items():
            cells = [percent_cell(r.split_map(s)) for s in SPLIT_TITLES]
            lines.append(f"{SETTING_TITLES.get(name, name):<14} {cells[0]:>8} {cells[1]:>8} "
                         f"{cells[2]:>9}")
        return "\n".join(lines + [f"note: {n}" for n in self.empty_notes()])


def percent_cell(value: float | None) -> str:
    """A mAP (fraction) as a table cell in percent; ``n/a`` for a split without a mean."""
    if value is None or np.isnan(value):
        return NO_MEAN
    return f"{100 * value:.2f}"
