"""From a loader's :class:`~hoi.pretrain.imagefolder.Batch` to normalised float images on the
training device.

Workers hand over uint8 pixels (4x fewer bytes across PCIe than float32) or, with
``data.decode=device``, the JPEG files' bytes: those are decoded as one batch on the device
(``torchvision.io.decode_jpeg``, nvJPEG on CUDA), cropped, resized and flipped there
(:func:`hoi.pretrain.augment.crop_tensor`). Normalisation is always done here, on the device.

Why torchvision's decoder and not NVIDIA DALI: DALI is on the registries, but it is a second
data pipeline with its own augmentation operators, so the CPU path could not be the same
augmentation (tested here without a GPU); torchvision is already a dependency and decodes the
same JPEG bytes on the CPU, which the tests use. torchvision 0.29 marks its decoders deprecated
in favour of TorchCodec, which the registries do not offer yet.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from hoi.pretrain.augment import crop_tensor, normalize
from hoi.pretrain.imagefolder import Batch, ImageFolderDataset

DECODE_MODES = ("auto", "cpu", "device")
MEMORY_FORMATS = {"auto": None, "channels_last": torch.channels_last,
                  "contiguous": torch.contiguous_format}
_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


def decode_on_device(mode: str, device: torch.device) -> bool:
    """Whether training JPEGs are decoded on ``device`` (``data.decode``): ``auto`` on CUDA
    only."""
    if mode not in DECODE_MODES:
        raise ValueError(f"data.decode must be one of {DECODE_MODES}, got {mode!r}")
    return device.type == "cuda" if mode == "auto" else mode == "device"


def memory_format(name: str, device: torch.device) -> torch.memory_format:
    """``memory_format``: ``auto`` is channels_last on CUDA (faster convolutions with tensor
    cores), contiguous elsewhere."""
    if name not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {tuple(MEMORY_FORMATS)}, got {name!r}")
    chosen = MEMORY_FORMATS[name]
    if chosen is None:
        return torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return chosen


def decode_jpegs(data: Sequence[torch.Tensor],
                 device: torch.device) -> list[torch.Tensor | RuntimeError]:
    """JPEG bytes -> uint8 (3, H, W) RGB images on ``device``, one batched call; if the batch
    fails, each file alone, so that a bad file is named (its entry is the error)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=DeprecationWarning)
        try:
            return list(decode_jpeg(list(data), mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            out: list[torch.Tensor | RuntimeError] = []
            for item in data:
                try:
                    out.append(decode_jpeg(item, mode=ImageReadMode.RGB, device=device))
                except RuntimeError as err:
                    out.append(err)
            return out


class DeviceFeeder:
    """``feeder(batch) -> (images (B, 3, S, S) float32 normalised, targets (B,), skipped)`` on
    ``device``; ``skipped`` counts the JPEGs that failed to decode here (``data.on_bad_image
    =skip``; with ``stop`` the error names the file)."""

    def __init__(self, device: torch.device, mean: Sequence[float], std: Sequence[float],
                 crop: int, fmt: torch.memory_format, dataset: ImageFolderDataset) -> None:
        self.device = device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(std, dtype=torch.float32, device=device)
        self.crop = crop
        self.format = fmt
        self.dataset = dataset

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        targets = batch.targets
        parts = []
        if batch.images.shape[0]:
            parts.append(batch.images.to(self.device, non_blocking=True))
        skipped = 0
        if batch.encoded:
            n = batch.images.shape[0]
            keep = list(range(n))
            crops = []
            images = decode_jpegs(batch.encoded, self.device)
            for row, (image, params) in enumerate(zip(images, batch.params), start=n):
                if isinstance(image, RuntimeError):
                    if self.dataset.on_bad_image == "stop":
                        raise self.dataset.unreadable(int(batch.indices[row]), image) from image
                    skipped += 1
                    continue
                keep.append(row)
                crops.append(crop_tensor(image, params, self.crop))
            if crops:
                parts.append(torch.stack(crops))
            if skipped:
                targets = targets[keep]
        if not parts:
            raise self.dataset.unreadable(int(batch.indices[0]),
                                          RuntimeError("no image of the batch could be decoded"))
        images = parts[0] if len(parts) == 1 else torch.cat([p.float() for p in parts])
        images = normalize(images, self.mean, self.std).contiguous(memory_format=self.format)
        return images, targets.to(self.device, non_blocking=True), skipped
