"""The training augmentation of the SAC paper's ImageNet recipe (Sec. IV-B: random-resized
crop, horizontal flip) as explicit per-image parameters, applied either to a PIL image in a
loader worker (:func:`crop_pil`) or to a decoded uint8 tensor on the training device
(:func:`crop_tensor`).

The random draw of an image depends only on (seed, epoch, sample index), never on a worker's
RNG state. So the same crops are drawn whatever the number of workers, with persistent workers
(which keep their state across epochs), after a resume, and on both paths: a test gives both
the same parameters and compares the pixels.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

# attempts at a crop of the drawn area and aspect ratio before the centre-crop fallback
# (torchvision's RandomResizedCrop.get_params uses 10)
CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class CropParams:
    """The crop (rows top .. top+height, columns left .. left+width) of the decoded image that
    is resized to the training size, and whether it is then mirrored."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


@dataclass(frozen=True)
class TrainAugment:
    """Random-resized crop to ``crop`` x ``crop`` (area fraction in ``scale``, aspect ratio
    log-uniform in ``ratio``) and a horizontal flip with probability ``hflip``."""

    crop: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    hflip: float
    seed: int = 0

    def params(self, height: int, width: int, epoch: int, index: int) -> CropParams:
        """The draw for sample ``index`` of ``epoch`` on an image of ``height`` x ``width``."""
        rng = random.Random(sample_seed(self.seed, epoch, index))
        return sample_crop(height, width, self.scale, self.ratio, self.hflip, rng)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 64-bit seed of (seed, epoch, index)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


def sample_crop(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                hflip: float, rng: random.Random) -> CropParams:
    """The algorithm of torchvision's ``RandomResizedCrop.get_params`` (transforms.py) with an
    explicit generator: up to :data:`CROP_ATTEMPTS` draws of an area fraction in ``scale`` and a
    log-uniform aspect ratio in ``ratio``; if none fits, the whole image cut to the nearest
    allowed aspect ratio, centred."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(CROP_ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
            break
    else:
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            w, h = int(round(height * max(ratio))), height
        else:
            w, h = width, height
        top, left = (height - h) // 2, (width - w) // 2
    return CropParams(top, left, h, w, rng.random() < hflip)


def crop_pil(image: Image.Image, p: CropParams, size: int) -> torch.Tensor:
    """PIL RGB image -> uint8 (3, size, size): crop, bilinear resize with antialiasing, flip."""
    out = TF.resized_crop(image, p.top, p.left, p.height, p.width, [size, size],
                          interpolation=InterpolationMode.BILINEAR, antialias=True)
    if p.flip:
        out = TF.hflip(out)
    return TF.pil_to_tensor(out)


def crop_tensor(image: torch.Tensor, p: CropParams, size: int) -> torch.Tensor:
    """uint8 (3, H, W) on any device -> float32 (3, size, size) holding whole numbers in
    [0, 255]: the operations of :func:`crop_pil`, rounded as PIL's 8-bit output is."""
    x = image[None, :, p.top:p.top + p.height, p.left:p.left + p.width].float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True)[0]
    x = x.round_().clamp_(0, 255)
    return x.flip(-1) if p.flip else x


def eval_pil(image: Image.Image, resize: int, crop: int) -> torch.Tensor:
    """PIL RGB image -> uint8 (3, crop, crop): shorter side to ``resize``, centre crop."""
    out = TF.center_crop(TF.resize(image, resize, antialias=True), [crop, crop])
    return TF.pil_to_tensor(out)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (or whole-number float) (B, 3, H, W) -> float32 ``(x / 255 - mean) / std``, the
    operations (and so the values) of torchvision's ``ToTensor`` then ``Normalize``; ``mean``
    and ``std`` are (3,) float32 tensors on the images' device."""
    return images.float().div_(255).sub_(mean[:, None, None]).div_(std[:, None, None])
