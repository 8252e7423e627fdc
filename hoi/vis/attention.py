"""What the SAC blocks of a backbone compute on an image: the paper's Fig. 3, 4 and 5.

- Fig. 4: the K attention maps alpha (softmax over positions) of each SAC block, upsampled over
  the image.
- Fig. 5: the channel-norm maps ||X|| of the 3x3 conv output (the block's input) and
  ||Z - X|| of the SAC context before the addition (what the paper shows), beside ||Z||.
- Fig. 3: the distribution of the cosine similarity cos(beta_i, beta_j) between positions,
  without and with a softmax over the K contexts of beta (Sec. IV-A, "Normalization").

The inputs and outputs of the blocks are recorded with forward hooks; nothing in the model
changes except, for Fig. 3, the ``softmax_beta`` switch, which is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

from hoi.data.images import IMAGENET_MEAN, IMAGENET_STD, backbone_input, load_rgb
from hoi.models.attention.sac import SpatiallyAwareContext
from hoi.models.backbones import AttentionResNet, backbone_config
from hoi.models.weights import load_backbone_weights
from hoi.vis.common import new_figure, normalise_map, safe_stem, save_figure
from hoi.vis.hoi_drawing import VisError

DEFAULT_INPUT_SIZE = (400, 400)
MAX_POSITIONS = 1024  # positions sampled per image for the cosine similarities
HIST_BINS = 100


def load_sac_backbone(backbone: str | Path, weights: str | Path | None = "none",
                      strict: bool = True) -> AttentionResNet:
    """A backbone in eval mode from an arch name or YAML file, with ``weights`` (a file,
    "torchvision", or "none"/None for random initialisation). It must contain SAC blocks."""
    spec = str(backbone)
    is_file = spec.endswith((".yaml", ".yml"))
    cfg = backbone_config(None if is_file else spec, spec if is_file else None)
    model = AttentionResNet(cfg)
    if weights is not None and str(weights) != "none":
        load_backbone_weights(model, weights, strict=strict, ignore_classifier=True)
    if not sac_modules(model):
        raise VisError(f"backbone {spec} has no SAC block (attention.type={cfg.attention.type}); "
                       "these pictures need a SAC backbone, e.g. sac_resnet50")
    return model.eval()


def sac_modules(model: torch.nn.Module) -> list[tuple[str, SpatiallyAwareContext]]:
    """(qualified name, module) of the SAC blocks of ``model``, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpatiallyAwareContext)]


def block_title(name: str) -> str:
    """'layer3.5.attn_after_conv2' -> 'stage 4, block 6 (layer3.5.attn_after_conv2)'."""
    parts = name.split(".")
    if (len(parts) >= 2 and parts[0].startswith("layer") and parts[0][5:].isdigit()
            and parts[1].isdigit()):
        return f"stage {int(parts[0][5:]) + 1}, block {int(parts[1]) + 1} ({name})"
    return name


@dataclass
class SACMaps:
    """What one SAC block computed on one image (feature-map resolution h x w).

    Attributes:
        name: the block's qualified module name.
        alpha: (K, h, w) attention maps, each summing to 1 over the positions (Eq. 2).
        beta: (K, h, w) context weights (Eq. 4), as the block used them.
        input_norm: (h, w) ||X|| over channels: the 3x3 conv output.
        context_norm: (h, w) ||Z - X||: the SAC context before the addition (paper Fig. 5).
        output_norm: (h, w) ||Z||.
    """

    name: str
    alpha: np.ndarray
    beta: np.ndarray
    input_norm: np.ndarray
    context_norm: np.ndarray
    output_norm: np.ndarray

    @property
    def num_contexts(self) -> int:
        return self.alpha.shape[0]


@contextmanager
def _record(model: torch.nn.Module) -> Iterator[dict[str, list]]:
    """Hooks on every SAC block that store, per forward, (alpha, beta, ||X||, ||Z-X||, ||Z||)."""
    records: dict[str, list] = {}
    handles = []
    for name, module in sac_modules(model):
        def hook(mod: SpatiallyAwareContext, inputs: tuple, output: torch.Tensor,
                 name: str = name) -> None:
            x = inputs[0]
            records.setdefault(name, []).append((
                mod.last_alpha, mod.last_beta, x.norm(dim=1), (output - x).norm(dim=1),
                output.norm(dim=1),
            ))
        handles.append(module.register_forward_hook(hook))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


def _last_sac_stage(model: AttentionResNet) -> int:
    stages = [int(n.split(".")[0][5:]) + 1 for n, _ in sac_modules(model)]
    return max(stages) if stages else 5


@torch.no_grad()
def sac_maps(model: AttentionResNet, images: Sequence[Image.Image] | torch.Tensor,
             input_size: Sequence[int] = DEFAULT_INPUT_SIZE) -> list[list[SACMaps]]:
    """Run ``model`` (up to its last SAC block's stage) and return, per image, per SAC block,
    the :class:`SACMaps`. ``images``: PIL images (resized to ``input_size`` = (H, W) and
    normalised) or a ready (B, 3, H, W) batch."""
    if isinstance(images, torch.Tensor):
        batch = images
    else:
        batch = torch.stack([backbone_input(im, input_size, IMAGENET_MEAN,
                                            IMAGENET_STD) for im in images])
    was_training = model.training
    model.eval()
    try:
        with _record(model) as records:
            model.forward_features(batch, last_stage=_last_sac_stage(model))
    finally:
        model.train(was_training)
    out: list[list[SACMaps]] = [[] for _ in range(len(batch))]
    for name, calls in records.items():
        alpha, beta, xn, cn, zn = calls[-1]
        for b in range(len(batch)):
            out[b].append(SACMaps(name, alpha[b].float().numpy(), beta[b].float().numpy(),
                                  xn[b].float().numpy(), cn[b].float().numpy(),
                                  zn[b].float().numpy()))
    return out


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (..., h, w) maps to ``size`` = (H, W)."""
    t = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    lead = t.shape[:-2]
    t = F.interpolate(t.reshape(1, -1, *t.shape[-2:]), size=size, mode="bilinear",
                      align_corners=False)
    return t.reshape(*lead, *size).numpy()


def _overlay(ax, image: np.ndarray, heat: np.ndarray, title: str, alpha: float = 0.55) -> None:
    ax.imshow(image)
    ax.imshow(normalise_map(heat), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def _panel_size(image: np.ndarray, side: float = 180.0) -> tuple[float, float]:
    h, w = image.shape[:2]
    return (side, side * h / w) if w >= h else (side * w / h, side)


def plot_alpha(image: Image.Image | np.ndarray, maps: SACMaps, max_cols: int = 5) -> Figure:
    """Fig. 4 for one block: the image, then its K alpha maps over it (each min-max scaled)."""
    arr = np.asarray(image)
    k = maps.num_contexts
    cols = min(max_cols, k + 1)
    rows = -(-(k + 1) // cols)
    pw, ph = _panel_size(arr)
    fig = new_figure(cols * pw, rows * (ph + 22) + 24)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes.flat[0].imshow(arr)
    axes.flat[0].set_title("image", fontsize=8)
    alpha = upsample(maps.alpha, arr.shape[:2])
    for j in range(k):
        _overlay(axes.flat[j + 1], arr, alpha[j], f"alpha {j + 1}/{k}")
    fig.suptitle(f"SAC attention maps, {block_title(maps.name)}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_norms(image: Image.Image | np.ndarray, maps: SACMaps) -> Figure:
    """Fig. 5 for one block: the image, ||X|| (3x3 conv), ||Z - X|| (SAC context) and ||Z||."""
    arr = np.asarray(image)
    pw, ph = _panel_size(arr)
    fig = new_figure(4 * pw, ph + 46)
    axes = fig.subplots(1, 4, squeeze=False)[0]
    axes[0].imshow(arr)
    axes[0].set_title("image", fontsize=8)
    axes[0].set_axis_off()
    size = arr.shape[:2]
    context = "||Z - X||: SAC context" + (" (zero: the block is the identity)"
                                          if not np.any(maps.context_norm) else "")
    for ax, values, title in ((axes[1], maps.input_norm, "||X||: 3x3 conv"),
                              (axes[2], maps.context_norm, context),
                              (axes[3], maps.output_norm, "||Z||: SAC output")):
        ax.imshow(normalise_map(upsample(values, size)), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
        ax.set_axis_off()
    fig.suptitle(f"channel norms, {block_title(maps.name)}", fontsize=9)
    fig.tight_layout()
    return fig


def save_attention_maps(model: AttentionResNet, images: Sequence[str | Path], out_dir: str | Path,
                        input_size: Sequence[int] = DEFAULT_INPUT_SIZE) -> list[Path]:
    """Fig. 4 and Fig. 5 for every image and every SAC block of ``model``.

    Writes ``<image stem>_<block>_alpha.png`` and ``<image stem>_<block>_norms.png`` into
    ``out_dir``; returns their paths.
    """
    if not images:
        raise VisError("no image given")
    out_dir = Path(out_dir)
    written = []
    for path in images:
        image = load_rgb(path)
        arr = np.asarray(image)
        stem = safe_stem(Path(path).stem)
        for maps in sac_maps(model, [image], input_size)[0]:
            block = safe_stem(maps.name.replace(".attn_after_conv2",
                                                "").replace(".attn_after_conv3", "_conv3"))
            written.append(save_figure(plot_alpha(arr, maps),
                                       out_dir / f"{stem}_{block}_alpha.png"))
            written.append(save_figure(plot_norms(arr, maps),
                                       out_dir / f"{stem}_{block}_norms.png"))
    return written


# ------------------------------------------------------------------------------ Fig. 3


@contextmanager
def softmax_beta(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Temporarily set ``softmax_beta`` of every SAC block of ``model``."""
    modules = [m for _, m in sac_modules(model)]
    saved = [m.softmax_beta for m in modules]
    for m in modules:
        m.softmax_beta = enabled
    try:
        yield
    finally:
        for m, s in zip(modules, saved):
            m.softmax_beta = s


def pairwise_cosine(vectors: np.ndarray, max_positions: int = MAX_POSITIONS,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """cos(v_i, v_j) for all i < j of ``vectors`` (N, K); at most ``max_positions`` rows,
    sampled without replacement when N is larger. Returns (n (n - 1) / 2,) float32."""
    v = np.asarray(vectors, dtype=np.float64)
    if len(v) > max_positions:
        rng = rng if rng is not None else np.random.default_rng(0)
        v = v[rng.choice(len(v), max_positions, replace=False)]
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    i, j = np.triu_indices(len(v), k=1)
    return (v @ v.T)[i, j].astype(np.float32)


def beta_similarities(model: AttentionResNet, images: Sequence[Image.Image],
                      input_size: Sequence[int] = DEFAULT_INPUT_SIZE,
                      max_positions: int = MAX_POSITIONS,
                      seed: int = 0) -> dict[str, dict[bool, np.ndarray]]:
    """Pairwise cosine similarities of beta between positions, per SAC block, without
    (``False``) and with (``True``) a softmax over the K contexts.

    Both runs use the same weights and images; "with" switches ``softmax_beta`` on in every SAC
    block (so later blocks see the inputs of that model). The same positions are sampled in
    both runs. Returns ``{block name: {False: (P,), True: (P,)}}``, images concatenated.
    """
    out: dict[str, dict[bool, np.ndarray]] = {}
    for enabled in (False, True):
        rng = np.random.default_rng(seed)
        with softmax_beta(model, enabled):
            per_image = sac_maps(model, images, input_size)
        for maps_of_image in per_image:
            for maps in maps_of_image:
                vectors = maps.beta.reshape(maps.beta.shape[0], -1).T  # N, K
                sims = pairwise_cosine(vectors, max_positions, rng)
                entry = out.setdefault(maps.name, {})
                entry[enabled] = np.concatenate([entry[enabled],
                                                 sims]) if enabled in entry else sims
    return out


def plot_beta_similarity(similarities: dict[str, dict[bool, np.ndarray]], configured: bool = False,
                         bins: int = HIST_BINS) -> Figure:
    """Fig. 3: one panel per SAC block, histograms (counts) of cos(beta_i, beta_j) without and
    with softmax, overlaid. ``configured`` marks which of the two the model was built with."""
    names = list(similarities)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = new_figure(cols * 360, rows * 270)
    axes = fig.subplots(rows, cols, squeeze=False)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names):
        for enabled, color in ((False, "#1f77b4"), (True, "#d62728")):
            sims = similarities[name][enabled]
            label = ("with softmax" if enabled else "without softmax") + \
                (" (as built)" if enabled == configured else "") + f", mean {sims.mean():.2f}"
            ax.hist(sims, bins=edges, color=color, alpha=0.5, label=label)
        ax.set_title(block_title(name), fontsize=8)
        ax.set_xlabel("cosine similarity", fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("cos(beta_i, beta_j) between positions (paper Fig. 3)", fontsize=9)
    fig.tight_layout()
    return fig


def save_beta_similarity(model: AttentionResNet, images: Sequence[str | Path], out: str | Path,
                         input_size: Sequence[int] = DEFAULT_INPUT_SIZE,
                         max_positions: int = MAX_POSITIONS, seed: int = 0) -> list[Path]:
    """Fig. 3 for ``images`` into the PNG ``out``; returns ``[out]``."""
    if not images:
        raise VisError("no image given")
    configured = all(m.softmax_beta for _, m in sac_modules(model))
    sims = beta_similarities(model, [load_rgb(p) for p in images], input_size, max_positions, seed)
    return [save_figure(plot_beta_similarity(sims, configured), out)]
