"""Mixed precision: which autocast dtype a run uses on its device, and whether it needs a
GradScaler.

``amp_dtype: auto`` picks bfloat16 where the GPU supports it (its exponent range needs no loss
scaling, so no scaler and no host synchronisation in the optimiser step) and float16 with a
GradScaler elsewhere; a CPU always runs float32.
"""

from __future__ import annotations

import contextlib

import torch

from hoi.registry import Table

# amp_dtype: the autocast dtype on a GPU (None: decided by the device)
AMP_DTYPES = Table("amp_dtype", {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16})


def resolve_amp(amp: bool, amp_dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run (None: float32, no autocast): only on CUDA, only with
    ``amp``."""
    chosen = AMP_DTYPES[amp_dtype]
    if not amp or device.type != "cuda":
        return None
    if chosen is None:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return chosen


def autocast(device: torch.device,
             dtype: torch.dtype | None) -> torch.autocast | contextlib.nullcontext:
    """``torch.autocast`` in ``dtype`` on ``device``; nothing when ``dtype`` is None (any
    device, ``meta`` included)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
