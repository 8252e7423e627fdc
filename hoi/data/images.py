"""Reading HICO-DET images and turning them into backbone inputs.

Backbone inputs follow the official VSGNet code (README, "Deviations"): the whole image resized to
a fixed size (VSGNet's
400x400 by default), scaled to [0, 1] and normalised with the ImageNet mean and std. (The
official VSGNet code feeds unnormalised images; we normalise as the backbone was trained.)
The resize happens on the 8-bit image (:func:`resized_uint8`, what a loader hands over), the
normalisation on the device that runs the backbone (:func:`normalize_images`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from hoi.data.annotations import UNKNOWN_SIZE
from hoi.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageError(UserError, OSError):
    """An image that is missing or cannot be decoded."""


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB; the error names the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise ImageError(f"image not found: {path}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError(f"{path}: cannot decode image ({err})") from err


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(w, h) of an image from its header, without decoding it; the error names the file."""
    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except FileNotFoundError as err:
        raise ImageError(f"image not found: {path}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError(f"{path}: cannot read the image header ({err})") from err


def resized_uint8(image: Image.Image, size: Sequence[int] = (400, 400)) -> torch.Tensor:
    """Resize to ``size`` = (H, W) with PIL's bilinear filter on the 8-bit image -> (3, H, W)
    uint8: what a loader hands to the device (a quarter of the float32 bytes), normalised there
    by :func:`normalize_images`."""
    h, w = int(size[0]), int(size[1])
    arr = np.array(image.resize((w, h), Image.BILINEAR), dtype=np.uint8)  # a writable copy
    return torch.from_numpy(arr).permute(2, 0, 1)


def normalize_images(images: torch.Tensor,
                     mean: Sequence[float] | torch.Tensor = IMAGENET_MEAN,
                     std: Sequence[float] | torch.Tensor = IMAGENET_STD) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float32, scaled to [0, 1] and normalised with ``mean`` /
    ``std``, on the images' device.

    The one normalisation of backbone inputs (extraction on its device, :func:`backbone_input`
    on the host): the same float32 operations in the same order (``x / 255``, ``- mean``,
    ``/ std``), each correctly rounded, so that it gives the same bits wherever it runs.
    ``mean`` / ``std`` may be float32 tensors already on that device (:func:`norm_tensors`):
    a list would be copied there at every call, and such a copy waits for the device."""
    x = images.to(torch.float32) / 255.0
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(3, 1, 1)
    return (x - mean_t) / std_t


def norm_tensors(mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as float32 (3, 1, 1) tensors on ``device``, made once for
    :func:`normalize_images`."""
    return (torch.tensor(mean, dtype=torch.float32).view(3, 1, 1).to(device),
            torch.tensor(std, dtype=torch.float32).view(3, 1, 1).to(device))


def backbone_input(
    image: Image.Image,
    size: Sequence[int] = (400, 400),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Resize to ``size`` = (H, W) (bilinear), scale to [0, 1], normalise -> (3, H, W) float32:
    :func:`normalize_images` of :func:`resized_uint8`, on the host."""
    return normalize_images(resized_uint8(image, size), mean, std)


def loader_workers(processes_per_machine: int | None = None) -> int:
    """Default number of DataLoader workers: the cores this process may use, less one for the
    process itself, shared among the ``processes_per_machine`` ranks of a machine (default
    torchrun's ``LOCAL_WORLD_SIZE``); at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    ranks = processes_per_machine or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, ranks) - 1)


def check_image_dir(root: str | Path, filenames: Sequence[str], source: str) -> Path:
    """Fail before any work if the image folder or some of its images are missing."""
    root = Path(root)
    if not root.is_dir():
        raise ImageError(f"image folder not found: {root}")
    missing = [n for n in filenames if not (root / n).is_file()]
    if missing:
        raise ImageError(
            f"{root}: {len(missing)} of the {len(filenames)} images listed in {source} are "
            f"missing, e.g. {missing[:3]}"
        )
    return root


def check_image_size(image: Image.Image, path: str | Path, expected: Sequence[int],
                     source: str) -> None:
    """Refuse an image whose decoded [w, h] differs from the annotation's ``size`` (boxes are in
    the annotation's pixels: a resized or swapped image would shift every box)."""
    w, h = int(expected[0]), int(expected[1])
    # an image no annotation gave a size (e.g. hoi.data.hake): nothing to compare
    if (w, h) == UNKNOWN_SIZE:
        return
    if image.size != (w, h):
        raise ImageError(f"{path}: decoded size {image.size[0]}x{image.size[1]} (w x h), but "
                         f"{source} gives {w}x{h} (expected the original HICO-DET image)")


class ImageListDataset(Dataset):
    """Images ``root/filenames[i]`` for the given indices -> ``(i, transform(image))``.

    With ``sizes`` ([w, h] per filename, from the annotation file ``source``), each decoded
    image is checked against its size first (:func:`check_image_size`).
    """

    def __init__(
        self,
        root: str | Path,
        filenames: Sequence[str],
        indices: Sequence[int],
        transform: Callable[[Image.Image], object],
        sizes: Sequence[Sequence[int]] | None = None,
        source: str = "the annotation file",
    ) -> None:
        self.root = Path(root)
        self.filenames = list(filenames)
        self.indices = list(indices)
        self.transform = transform
        self.sizes = None if sizes is None else [tuple(int(v) for v in s) for s in sizes]
        self.source = source

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, object]:
        i = self.indices[k]
        path = self.root / self.filenames[i]
        image = load_rgb(path)
        if self.sizes is not None:
            check_image_size(image, path, self.sizes[i], self.source)
        return i, self.transform(image)
