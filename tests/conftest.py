"""Shared test setup: one torch thread (idle OpenMP threads spin on 2-core machines), fixed
seeds, and the location of ../shared (the paper's data that CI has beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HOI_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository (CI has it); tests that need it skip without it."""
    if not (SHARED / "hicodet").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set HOI_SHARED)")
    return SHARED
