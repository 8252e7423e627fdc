"""How far the VSGNet heads' outputs move under each numerical deviation from the official code
that the README's deviation table lists: the pixel map and geometry (``model.interaction_map``,
``model.pair_geometry``), float16 features, fp16 or bf16 autocast (``amp``, ``amp_dtype``) and
BatchNorm over the global batch instead of each GPU's slice (the official ``nn.DataParallel``).

    python scripts/deviation_effects.py [--images 16] [--gpus 4] [--seed 0] [--device cpu]

One batch of ``--images`` images (1024 x 25 x 25 maps, 3 humans and 5 other objects each, the
humans appended to the objects, as Table XI's heads see them), the default-initialised model
with the official settings; each row changes one thing and prints the largest difference of
the logits and of the final HOI scores (LIS and the object -> verb mask included) against
that reference. Random weights and inputs: this gives the size of each effect at the output,
not its effect on mAP.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from hoi.inputs.random_batch import random_batch
from hoi.models.heads.vsgnet import VSGNet, VSGNetConfig

LOGITS = ("visual", "interaction", "graph", "attention")


def outputs(model: VSGNet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The four logits and the final scores (0 where the mask forbids the verb)."""
    with torch.no_grad():
        out = model(batch)
        log_p, valid = model.log_scores(out, batch)
    res = {k: out[k].float() for k in LOGITS}
    res["score"] = torch.where(valid, log_p.exp(), torch.zeros_like(log_p))
    return res


def per_gpu_slices(model: VSGNet, batch: dict[str, torch.Tensor], gpus: int) -> dict:
    """nn.DataParallel: each of ``gpus`` replicas runs (and normalises) its slice of images."""
    n = batch["features"].shape[0]
    parts = [collate_slice(batch, idx) for idx in np.array_split(np.arange(n), gpus)]
    outs = [outputs(model, p) for p in parts]
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def collate_slice(batch: dict[str, torch.Tensor], images: np.ndarray) -> dict[str, torch.Tensor]:
    """The sub-batch of the given images, re-indexed."""
    keep = torch.as_tensor(images)
    sel = {"h": torch.isin(batch["image_h"], keep), "o": torch.isin(batch["image_o"], keep),
           "p": torch.isin(batch["pair_image"], keep)}
    remap = torch.full((batch["features"].shape[0],), -1, dtype=torch.int64)
    remap[keep] = torch.arange(len(keep))

    def reindex(mask: torch.Tensor) -> torch.Tensor:
        new = torch.full((len(mask),), -1, dtype=torch.int64)
        new[mask] = torch.arange(int(mask.sum()))
        return new

    new_h, new_o = reindex(sel["h"]), reindex(sel["o"])
    out = {"features": batch["features"][keep], "image_size": batch["image_size"][keep],
           "index": batch["index"][keep]}
    for key in ("boxes_h", "scores_h"):
        out[key] = batch[key][sel["h"]]
    for key in ("boxes_o", "scores_o", "labels_o"):
        out[key] = batch[key][sel["o"]]
    out["image_h"] = remap[batch["image_h"][sel["h"]]]
    out["image_o"] = remap[batch["image_o"][sel["o"]]]
    out["pair_image"] = remap[batch["pair_image"][sel["p"]]]
    out["pair_h"] = new_h[batch["pair_h"][sel["p"]]]
    out["pair_o"] = new_o[batch["pair_o"][sel["p"]]]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--gpus", type=int, default=4, help="DataParallel replicas (BatchNorm row)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    batch = {k: v.to(device) for k, v in random_batch(args.images, 3, 5, args.seed).items()}
    model = VSGNet(VSGNetConfig()).to(device).eval()
    reference = outputs(model, batch)

    def with_config(**changes: str) -> Callable[[], dict]:
        def run() -> dict:
            other = VSGNet(VSGNetConfig(**changes)).to(device).eval()
            other.load_state_dict(model.state_dict())
            return outputs(other, batch)
        return run

    def fp16_features() -> dict:
        return outputs(model, dict(batch, features=batch["features"].half()))

    def with_autocast(dtype: torch.dtype) -> Callable[[], dict]:
        def run() -> dict:
            with torch.autocast(device.type, dtype=dtype):
                return outputs(model, batch)
        return run

    def train_mode(gpus: int) -> Callable[[], dict]:
        def run() -> dict:
            model.train()
            try:
                return outputs(model, batch) if gpus == 1 else per_gpu_slices(model, batch, gpus)
            finally:
                model.eval()
        return run

    rows: list[tuple[str, Callable[[], dict], dict]] = [
        ("model.interaction_map=pixel", with_config(interaction_map="pixel"), reference),
        ("model.pair_geometry=pixel", with_config(pair_geometry="pixel"), reference),
        ("both pixel (this project before)", with_config(interaction_map="pixel",
                                                         pair_geometry="pixel"), reference),
        ("features stored as float16", fp16_features, reference),
        (f"fp16 autocast ({device.type})", with_autocast(torch.float16), reference),
        (f"bf16 autocast ({device.type})", with_autocast(torch.bfloat16), reference),
    ]
    global_bn = train_mode(1)()
    rows.append((f"BatchNorm per slice of {args.images // args.gpus} images (DataParallel x"
                 f"{args.gpus}), train mode", train_mode(args.gpus), global_bn))
    pairs = int(batch["pair_h"].shape[0])
    print(f"{args.images} images, {pairs} pairs, default-initialised VSGNet; largest |difference| "
          "to the official setting")
    print(f"| deviation | {' | '.join(LOGITS)} logits | final score (max / mean) |")
    print("|---|" + "---|" * (len(LOGITS) + 1))
    for name, run, ref in rows:
        try:
            got = run()
        except RuntimeError as err:  # e.g. fp16 autocast where the device has none
            print(f"| {name} | not available: {str(err).splitlines()[0]} |")
            continue
        logit = " | ".join(f"{(got[k] - ref[k]).abs().max().item():.2e}" for k in LOGITS)
        diff = (got["score"] - ref["score"]).abs()
        print(f"| {name} | {logit} | {diff.max().item():.2e} / {diff.mean().item():.2e} |")
    print(f"(scores: largest {reference['score'].max().item():.3f}, mean of the allowed "
          f"{reference['score'][reference['score'] > 0].mean().item():.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
