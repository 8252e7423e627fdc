"""``hoi env``: what a bug report needs to know about this installation."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys

HELP = "print Python, PyTorch/CUDA, torchvision, Detectron2, h5py versions and the GPUs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed (no version)")
    except Exception as err:  # report, don't fail: this command exists to diagnose installs
        return f"not importable ({type(err).__name__}: {err})"


def collect() -> dict[str, object]:
    """The environment as a flat dict of strings, numbers and lists."""
    import torch

    info: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hoi": _version("hoi"),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda or "none",
        "cuda_available": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "torch_threads": torch.get_num_threads(),
        "torchvision": _version("torchvision"),
        "h5py": _version("h5py"),
        "numpy": _version("numpy"),
        "omegaconf": _version("omegaconf"),
    }
    try:
        from hoi.detectron2_compat import detectron2_status

        info.update(detectron2_status())
    except Exception as err:
        info["detectron2"] = f"not importable ({type(err).__name__}: {err})"
    return info


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0
