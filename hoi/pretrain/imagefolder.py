"""ImageNet-style image classification folders: ``root/<class>/<image>``, one folder per
class, the classes sorted by name (ImageNet: ``train/n01440764/*.JPEG``; the validation set
sorted into the same class folders). The training and evaluation transforms of the SAC paper
(Sec. IV-B) with every size a parameter.

A malformed tree fails at once with a message naming the folder and what was expected. An
unreadable image either stops the run (naming the file) or, with ``on_bad_image="skip"``, is
dropped from its batch by :func:`collate_skipping` and counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from hoi.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BAD_IMAGE_POLICIES = ("stop", "skip")


class DatasetError(UserError, RuntimeError):
    """An image folder tree that is missing or not laid out as expected."""


class ImageReadError(UserError, RuntimeError):
    """An image file that cannot be decoded (the message names it)."""


LAYOUT_HINT = (
    "expected one sub-folder per class holding that class's images, e.g. "
    "train/n01440764/n01440764_10026.JPEG and val/n01440764/ILSVRC2012_val_00000293.JPEG "
    "(ImageNet's validation images must first be sorted into class folders)"
)


def _is_image(name: str, extensions: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(e.lower() for e in extensions))


def scan_image_folder(
    root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted folder names) and (path, class index) samples of an image folder.

    Raises DatasetError if ``root`` is missing, has no class folders, or a class folder holds
    no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root} ({LAYOUT_HINT})")
    entries = list(os.scandir(root))
    classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = sum(1 for e in entries if e.is_file() and _is_image(e.name, extensions))
        found = f"{loose} image files directly in it" if loose else "no class folder"
        raise DatasetError(f"{root}: {found}; {LAYOUT_HINT}")
    samples: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        folder = root / name
        files = sorted(
            os.path.join(dirpath, f)
            for dirpath, _, names in os.walk(folder, followlinks=True)
            for f in names
            if _is_image(f, extensions)
        )
        if not files:
            raise DatasetError(
                f"{folder}: class folder holds no image (expected files ending in "
                f"{', '.join(extensions)})"
            )
        samples.extend((f, index) for f in files)
    return classes, samples


def check_same_classes(train_root: str | Path, train: list[str], val_root: str | Path,
                       val: list[str]) -> None:
    """Raise DatasetError unless the two splits have the same class folders."""
    if train == val:
        return
    only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
    raise DatasetError(
        f"{val_root} and {train_root} must hold the same class folders; "
        f"only in train ({len(only_train)}): {only_train[:5]}; only in val ({len(only_val)}): "
        f"{only_val[:5]}"
    )


class ImageFolderDataset(Dataset):
    """Items ``(image tensor (3, H, W), class index, sample index)``, or ``None`` for an
    unreadable image when ``on_bad_image="skip"`` (see :func:`collate_skipping`)."""

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Image.Image], torch.Tensor],
        on_bad_image: str = "stop",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got "
                             f"{on_bad_image!r}")
        self.root = Path(root)
        self.classes, self.samples = scan_image_folder(root, extensions)
        self.transform = transform
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        path, target = self.samples[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except Exception as err:  # PIL raises several types for truncated/corrupt files
            if self.on_bad_image == "skip":
                return None
            raise ImageReadError(
                f"{path}: cannot read image ({type(err).__name__}: {err}); expected an image file "
                f"of class '{self.classes[target]}'. Set data.on_bad_image=skip to skip and count "
                f"unreadable images instead."
            ) from err
        return self.transform(img), target, index


@dataclass
class Batch:
    """Images (B, 3, H, W), targets (B,), sample indices (B,), and the number of unreadable
    images left out of this batch."""

    images: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    skipped: int


def collate_skipping(items: list[tuple[torch.Tensor, int, int] | None]) -> Batch:
    """Stack the readable items; count the ``None`` ones (skipped unreadable images)."""
    good = [item for item in items if item is not None]
    if not good:
        raise ImageReadError(
            f"all {len(items)} images of a batch are unreadable; the dataset seems broken"
        )
    images, targets, indices = zip(*good)
    return Batch(
        images=torch.stack(images),
        targets=torch.tensor(targets, dtype=torch.long),
        indices=torch.tensor(indices, dtype=torch.long),
        skipped=len(items) - len(good),
    )


def train_transform(
    crop: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    hflip: float,
    mean: Sequence[float],
    std: Sequence[float],
) -> T.Compose:
    """Random-resized crop to ``crop`` x ``crop`` (scale and aspect-ratio jitter), horizontal
    flip with probability ``hflip``, normalisation. PIL image -> (3, crop, crop)."""
    return T.Compose([
        T.RandomResizedCrop(crop, scale=tuple(scale), ratio=tuple(ratio), antialias=True),
        T.RandomHorizontalFlip(hflip),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def eval_transform(resize: int, crop: int, mean: Sequence[float],
                   std: Sequence[float]) -> T.Compose:
    """Shorter side to ``resize``, centre crop ``crop`` x ``crop``, normalisation.
    PIL image -> (3, crop, crop)."""
    return T.Compose([
        T.Resize(resize, antialias=True),
        T.CenterCrop(crop),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
