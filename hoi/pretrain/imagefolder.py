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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from hoi.errors import UserError
from hoi.pretrain.augment import CropParams, TrainAugment, crop_pil, eval_pil

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BAD_IMAGE_POLICIES = ("stop", "skip")
# PIL modes of the JPEG files decoded on the device (nvJPEG); others (CMYK) in the workers
DEVICE_JPEG_MODES = ("RGB", "L")


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
    """The images of a class-folder tree, each with its class index and sample index.

    Three kinds of items, by how the dataset is built:

    - ``transform`` given (evaluation): ``(transform(image), class, index)``;
    - ``augment`` given: ``(uint8 (3, crop, crop), class, index)``, the image cropped in the
      worker by the draw of (seed, epoch, index); the key may be ``(epoch, index)``
      (:class:`EpochTaggedSampler`) or a bare index (epoch 0);
    - ``augment`` and ``encoded=True``: an :class:`EncodedImage` (the JPEG file's bytes and
      the draw) for decoding on the training device; a file nvJPEG cannot take (not a JPEG, or
      CMYK) is decoded and cropped here instead.

    An unreadable image is ``None`` with ``on_bad_image="skip"`` (see
    :func:`collate_skipping`).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        on_bad_image: str = "stop",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        augment: TrainAugment | None = None,
        encoded: bool = False,
    ) -> None:
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got "
                             f"{on_bad_image!r}")
        if (transform is None) == (augment is None):
            raise ValueError("give exactly one of transform (evaluation) and augment (training)")
        self.root = Path(root)
        self.classes, self.samples = scan_image_folder(root, extensions)
        self.transform = transform
        self.augment = augment
        self.encoded = encoded
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def unreadable(self, index: int, err: Exception) -> ImageReadError:
        path, target = self.samples[index]
        return ImageReadError(
            f"{path}: cannot read image ({type(err).__name__}: {err}); expected an image file "
            f"of class '{self.classes[target]}'. Set data.on_bad_image=skip to skip and count "
            f"unreadable images instead."
        )

    def __getitem__(self, key: int | tuple[int, int]) -> Item | None:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path, target = self.samples[index]
        try:
            if self.encoded:
                with Image.open(path) as img:  # reads the header only
                    fmt, mode, (width, height) = img.format, img.mode, img.size
                if fmt == "JPEG" and mode in DEVICE_JPEG_MODES:
                    data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
                    return EncodedImage(data, self.augment.params(height, width, epoch, index),
                                        target, index)
            with Image.open(path) as img:
                img = img.convert("RGB")
        except Exception as err:  # PIL raises several types for truncated/corrupt files
            if self.on_bad_image == "skip":
                return None
            raise self.unreadable(index, err) from err
        if self.augment is None:
            return self.transform(img), target, index
        params = self.augment.params(img.height, img.width, epoch, index)
        return crop_pil(img, params, self.augment.crop), target, index


@dataclass
class EncodedImage:
    """A JPEG file's bytes (uint8 (N,)) and its crop, for decoding on the training device."""

    data: torch.Tensor
    params: CropParams
    target: int
    index: int


Item = tuple[torch.Tensor, int, int] | EncodedImage


@dataclass
class Batch:
    """Images decoded in the workers (uint8 (N, 3, H, W), or float for a custom evaluation
    transform), JPEG files to decode on the device (M of them, with their crops), the targets
    and sample indices of both ((N + M,), decoded ones first), and the number of unreadable
    images left out of this batch."""

    images: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    skipped: int
    encoded: list[torch.Tensor] = field(default_factory=list)
    params: list[CropParams] = field(default_factory=list)

    def __len__(self) -> int:
        return self.targets.shape[0]

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pinning thread (``pin_memory=True``): page-locked copies,
        so that ``.to(device, non_blocking=True)`` really overlaps with compute."""
        return replace(self, images=self.images.pin_memory(), targets=self.targets.pin_memory(),
                       indices=self.indices.pin_memory())


def collate_skipping(items: list[Item | None]) -> Batch:
    """Stack the readable items (decoded ones first); count the ``None`` ones (skipped
    unreadable images)."""
    decoded = [item for item in items if isinstance(item, tuple)]
    encoded = [item for item in items if isinstance(item, EncodedImage)]
    if not decoded and not encoded:
        raise ImageReadError(
            f"all {len(items)} images of a batch are unreadable; the dataset seems broken"
        )
    targets = [t for _, t, _ in decoded] + [e.target for e in encoded]
    indices = [i for _, _, i in decoded] + [e.index for e in encoded]
    images = (torch.stack([x for x, _, _ in decoded]) if decoded
              else torch.zeros((0, 3, 1, 1), dtype=torch.uint8))
    return Batch(
        images=images,
        targets=torch.tensor(targets, dtype=torch.long),
        indices=torch.tensor(indices, dtype=torch.long),
        skipped=len(items) - len(decoded) - len(encoded),
        encoded=[e.data for e in encoded],
        params=[e.params for e in encoded],
    )


class EpochTaggedSampler(Sampler[tuple[int, int]]):
    """The indices of ``sampler`` as ``(epoch, index)`` keys, so that a dataset in a (possibly
    persistent) worker draws its augmentation from the epoch without shared state."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def train_augment(crop: int, scale: Sequence[float], ratio: Sequence[float], hflip: float,
                  seed: int) -> TrainAugment:
    """The training augmentation (:mod:`hoi.pretrain.augment`); normalisation is done on the
    training device (:func:`hoi.pretrain.augment.normalize`)."""
    return TrainAugment(crop, (float(scale[0]), float(scale[1])),
                        (float(ratio[0]), float(ratio[1])), float(hflip), int(seed))


def eval_transform(resize: int, crop: int) -> Callable[[Image.Image], torch.Tensor]:
    """Shorter side to ``resize``, centre crop ``crop`` x ``crop``.
    PIL image -> uint8 (3, crop, crop); normalised on the device."""
    return partial(eval_pil, resize=resize, crop=crop)
