"""The one door to Detectron2: import it through :func:`import_detectron2`.

Where Detectron2 came from PyPI (``pb1-detectron2==0.6``, upstream v0.6's Python code
without its C++ extension), three fixes are needed before any ``detectron2.*`` submodule is
imported; on a real upstream build they change nothing:

- Pillow 10 removed ``PIL.Image.LINEAR``: alias it to ``BILINEAR``;
- numpy 1.24 removed ``np.int``/``np.float``/``np.bool``/``np.object``/``np.str``: restore them;
- ``detectron2._C`` (the C++ ops) is absent: register an empty placeholder module, so that the
  pure-Python paths (Faster R-CNN inference and training) import. Rotated-box ops stay missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_PATCHED = False


def _has_real_extension() -> bool:
    try:
        spec = importlib.util.find_spec("detectron2._C")
    except (ImportError, ValueError):
        return False
    return spec is not None and not getattr(sys.modules.get("detectron2._C"), "__hoi_placeholder__",
                                            False)


def apply_compat_fixes() -> None:
    """Apply the import-time fixes once (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import numpy as np
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR  # type: ignore[attr-defined]
    for alias, target in {"int": int, "float": float, "bool": bool, "object": object,
                          "str": str}.items():
        if alias not in np.__dict__:
            setattr(np, alias, target)
    if "detectron2._C" not in sys.modules and not _has_real_extension():
        placeholder = types.ModuleType("detectron2._C")
        placeholder.__hoi_placeholder__ = True  # type: ignore[attr-defined]
        sys.modules["detectron2._C"] = placeholder
    _PATCHED = True


def import_detectron2() -> Any:
    """Import and return the ``detectron2`` package with the fixes applied.

    Raises ImportError with install instructions when Detectron2 is not installed.
    """
    if importlib.util.find_spec("detectron2") is None:
        raise ImportError(
            "Detectron2 is not installed. Run 'bash scripts/install.sh' (it installs upstream "
            "Detectron2 from git, or the PyPI copy pb1-detectron2==0.6 where git is unreachable)."
        )
    apply_compat_fixes()
    return importlib.import_module("detectron2")


def detectron2_status() -> dict[str, object]:
    """Detectron2's version and whether its C++ ops are present (for ``hoi env``)."""
    d2 = import_detectron2()
    placeholder = getattr(sys.modules.get("detectron2._C"), "__hoi_placeholder__", False)
    return {
        "detectron2": getattr(d2, "__version__", "unknown"),
        "detectron2_cpp_ops": not placeholder,
    }
