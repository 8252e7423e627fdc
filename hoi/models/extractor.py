"""The frozen feature extractor of the HOI pipeline, built from a backbone config and weights,
and rebuilt from what a features file recorded (so that ``hoi predict`` computes on new images
exactly the maps a model was trained on).

The provenance of the maps (docs/architecture.md#feature-files, :mod:`hoi.provenance`):
``backbone`` (config),
``attention``, ``weights`` (as given), ``weights_sha256`` (or ``random`` with ``weights_seed``),
``input_size``, ``normalization``, ``layer``, ``stride``, ``dtype``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hoi.config import build_config, to_dict
from hoi.data.images import norm_tensors, normalize_images
from hoi.errors import NonFiniteError, UserError
from hoi.models.backbones import (
    AttentionResNet,
    BackboneConfig,
    FrozenFeatureExtractor,
    upgrade_backbone_record,
    validate_backbone_config,
)
from hoi.models.complexity import describe
from hoi.models.weights import load_backbone_weights
from hoi.provenance import RANDOM_WEIGHTS, file_sha256

STORED_DTYPE = "float16"
TORCHVISION_PREFIX = "torchvision ImageNet ResNet-"


def build_extractor(
    cfg: BackboneConfig,
    weights: str,
    seed: int = 0,
    stage: int = 4,
    strict: bool = True,
    input_size: Sequence[int] = (400, 400),
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> tuple[FrozenFeatureExtractor, dict[str, Any]]:
    """The frozen backbone up to ``stage`` and the provenance of the maps it makes.

    ``weights``: a file, ``"torchvision"`` or ``"none"`` (random, seeded with ``seed`` so that
    the same seed rebuilds the same backbone).
    """
    recorded_seed = None
    if weights == "none":
        recorded_seed = int(seed)
        torch.manual_seed(recorded_seed)
    resnet = AttentionResNet(cfg)
    if weights == "none":
        weights_sha = RANDOM_WEIGHTS
    else:
        report = load_backbone_weights(resnet, weights, strict=strict, ignore_classifier=True)
        weights_sha = report.sha256 or f"{TORCHVISION_PREFIX}{cfg.depth} (V1)"
    extractor = FrozenFeatureExtractor(resnet, last_stage=stage)
    provenance = {
        "backbone": to_dict(cfg),
        "attention": describe(cfg),
        "weights": str(weights),
        "weights_sha256": weights_sha,
        "weights_seed": recorded_seed,
        "input_size": [int(v) for v in input_size],
        "normalization": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        "layer": f"stage{stage}",
        "stride": extractor.stride,
        "dtype": STORED_DTYPE,
    }
    return extractor, provenance


def rebuild_extractor(recorded: Mapping[str, Any], source: str,
                      weights_file: str | Path | None = None) -> tuple[FrozenFeatureExtractor,
                                                                       dict[str, Any]]:
    """The extractor that made features whose provenance is ``recorded`` (e.g. a checkpoint's
    training features; ``source`` names it in errors).

    Weights: random ones from their recorded seed; torchvision's by name; a file from
    ``weights_file`` or else the recorded path, refused unless its sha256 is the recorded one.
    """
    try:
        backbone = upgrade_backbone_record(recorded["backbone"])  # also older records
        cfg = build_config(BackboneConfig, None, (), base=backbone)
        validate_backbone_config(cfg)
        stage = int(str(recorded["layer"]).removeprefix("stage"))
        input_size, norm = recorded["input_size"], recorded["normalization"]
        mean, std = norm["mean"], norm["std"]
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{source}: its features provenance cannot rebuild the backbone ({err!r}); "
                        "expected backbone, layer, input_size, normalization {mean, std}"
                        ) from err
    sha = str(recorded.get("weights_sha256"))
    if sha == RANDOM_WEIGHTS:
        weights, seed = "none", int(recorded.get("weights_seed") or 0)
    elif sha.startswith(TORCHVISION_PREFIX):
        weights, seed = "torchvision", 0
    else:
        candidate = Path(weights_file) if weights_file else Path(str(recorded.get("weights")))
        if not candidate.is_file():
            raise UserError(f"{source}: its backbone weights {recorded.get('weights')} (sha256 "
                            f"{sha[:12]}) are not "
                            f"available here (expected a file; pass --backbone-weights FILE)")
        found = file_sha256(candidate)
        if found != sha:
            raise UserError(f"{candidate}: sha256 {found[:12]} is not the {sha[:12]} of the "
                            "weights that made "
                            f"the training features of {source} (expected the same backbone file)")
        weights, seed = str(candidate), 0
    return build_extractor(cfg, weights, seed, stage, True, input_size, mean, std)


def map_shape(extractor: FrozenFeatureExtractor, input_size: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of one image's map at ``input_size`` (H, W)."""
    device = next(iter(extractor.state_dict().values())).device
    with torch.no_grad():
        out = extractor(torch.zeros(1, 3, *input_size, device=device))
    return tuple(out.shape[1:])  # type: ignore[return-value]


def device_maps(extractor: FrozenFeatureExtractor,
                loader: Iterable[tuple[Any, torch.Tensor]],
                device: torch.device,
                normalization: Mapping[str, Sequence[float]] | None = None,
                channels_last: bool = False) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(image indices, (B, C, H, W) float16 maps on ``device``) per batch of ``(indices,
    images)`` from ``loader``; float16 autocast on GPU, as the maps are stored.

    ``images``: uint8 (B, 3, H, W) as :func:`hoi.data.images.resized_uint8` makes them, then
    normalised on ``device`` with ``normalization`` ({mean, std}) in float32; or float32 inputs
    already normalised (:func:`hoi.data.images.backbone_input`). ``channels_last``: the input in
    that memory format (for a model moved to it). The maps are the device's: nothing here waits
    for the device, the caller copies them (:func:`hoi.engine.write_behind.to_host`)."""
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")
    # on the device once: a copy from a list at every batch would wait for the device
    norm = None if normalization is None else norm_tensors(normalization["mean"],
                                                           normalization["std"], device)
    with torch.inference_mode():
        for indices, images in loader:
            x = images.to(device, non_blocking=True)
            if x.dtype == torch.uint8:
                if norm is None:
                    raise ValueError("uint8 images need the normalization {mean, std} to apply")
                x = normalize_images(x, *norm)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                maps = extractor(x)
            ids = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
            yield ids, maps.half().contiguous()


def extract_maps(extractor: FrozenFeatureExtractor,
                 loader: Iterable[tuple[Any, torch.Tensor]],
                 device: torch.device,
                 normalization: Mapping[str, Sequence[float]] | None = None,
                 ) -> Iterator[tuple[list[int], np.ndarray]]:
    """(image indices, (B, C, H, W) float16 maps as numpy) per batch: :func:`device_maps`
    copied to the host batch by batch (waiting for the device each time)."""
    for indices, maps in device_maps(extractor, loader, device, normalization):
        yield indices, maps.cpu().numpy()


class NonFiniteMapError(NonFiniteError):
    """A backbone map holding NaN or inf: refused before it is written."""


def finite_per_image(maps: torch.Tensor) -> torch.Tensor:
    """(B,) bool on the maps' device: whether every value of each image's map is finite (no
    NaN, no inf, also none from the float16 conversion of the stored maps)."""
    return torch.isfinite(maps).flatten(1).all(dim=1)


def refuse_non_finite(image: str | Path, weights: str) -> NonFiniteMapError:
    """The one-line error for a map of ``image`` holding NaN or inf."""
    return NonFiniteMapError(
        f"{image}: backbone map holds NaN/inf (weights {weights}); expected finite features: "
        "check the weights for NaN/inf values")
