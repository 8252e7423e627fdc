"""The pretraining recipe of a backbone file, and the check that one table compares one recipe.

``hoi export-backbone`` records :func:`recipe_from_checkpoint` in the file it writes: the
pretraining config, epochs done, schedule, data, final validation top-1, and an ``id`` that is
the same for two backbones trained the same way (whatever their architecture, data path,
machine or seed). torchvision's own ImageNet ResNet files are a recipe of their own, recognised
by the sha256 prefix that torchvision puts in their names; an exported file from before recipes
were recorded, or any other state dict, has the recipe ``unrecorded``.

    python -m hoi.pretrain.recipe --weights DIR [--allow-mixed] [--out recipes.json] ARCH...

checks that ``DIR/<arch>.pth`` exists for every ARCH and that all share one recipe; otherwise
it stops with one line naming the backbones and their recipes (exit 2) and writes nothing.
``--allow-mixed`` goes on; ``--out`` then records each backbone's recipe (for the table).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hoi.errors import UserError
from hoi.provenance import file_sha256

TORCHVISION_FILE = re.compile(r"^resnet(\d+)-([0-9a-f]{8})\.pth$")
UNRECORDED = "unrecorded"
# run control and machine-specific keys: they do not change what the backbone learns
_DATA_IGNORED = ("root", "train_dir", "val_dir", "workers", "extensions", "on_bad_image")
_OPTIM_IGNORED = ("eval_batch_size",)


class RecipeError(UserError, RuntimeError):
    """Backbones missing, or pretrained by different recipes."""


def _init_name(init: str | None) -> str:
    if init is None:
        return "random"
    name = Path(str(init)).name
    if str(init) == "torchvision" or TORCHVISION_FILE.match(name):
        return "torchvision"
    return f"file {name}"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def recipe_from_checkpoint(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe of a ``hoi pretrain`` checkpoint (its ``config``, ``epoch``, ``classes``,
    ``metrics``)."""
    cfg = dict(ckpt.get("config") or {})
    optim = {k: v for k, v in dict(cfg.get("optim") or {}).items() if k not in _OPTIM_IGNORED}
    data = {k: v for k, v in dict(cfg.get("data") or {}).items() if k not in _DATA_IGNORED}
    classes = list(ckpt.get("classes") or [])
    data.update(num_classes=len(classes), classes_sha256=_sha(classes))
    epochs = int(ckpt.get("epoch", -1)) + 1
    init = _init_name(cfg.get("init_weights"))
    identity = {"optim": optim, "data": data, "epochs": epochs, "init": init,
                "bn_momentum": cfg.get("bn_momentum"), "sync_bn": cfg.get("sync_bn")}
    top1 = (ckpt.get("metrics") or {}).get("val/top1")
    gamma = optim.get("lr_gamma") or 1.0
    summary = (f"hoi pretrain from {init}: {epochs} of {optim.get('epochs')} epochs, batch "
               f"{optim.get('batch_size')}, "
               f"lr {optim.get('lr')} x{gamma:g} every {optim.get('lr_step_epochs')} epochs, "
               f"warm-up {optim.get('warmup_epochs')}, {len(classes)} classes "
               f"[{data['classes_sha256'][:8]}], crop {data.get('train_crop')}")
    return {"id": _sha(identity)[:12], "source": "hoi pretrain", "summary": summary,
            "top1": None if top1 is None else float(top1), "epochs": epochs, "identity": identity,
            "config": cfg}


def torchvision_recipe(depth: int) -> dict[str, Any]:
    """torchvision's ImageNet-1k V1 weights: a recipe of their own."""
    return {"id": "torchvision-imagenet1k-v1", "source": "torchvision",
            "summary": f"torchvision ImageNet-1k V1 weights (ResNet-{depth})", "top1": None}


def recipe_of_file(path: str | Path) -> dict[str, Any]:
    """The recipe recorded in a backbone file, torchvision's for torchvision's own files, else
    ``unrecorded``."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise RecipeError(
            f"{path}: not a readable backbone file ({type(err).__name__}: {err})") from err
    if isinstance(obj, dict) and isinstance(obj.get("recipe"), dict):
        return dict(obj["recipe"])
    if isinstance(obj, dict) and "backbone" not in obj and "model" not in obj:
        for depth in (50, 101, 152):
            prefix = torchvision_hash(depth)
            if prefix and file_sha256(path).startswith(prefix):
                return torchvision_recipe(depth)
    return {"id": UNRECORDED, "source": "unknown", "top1": None,
            "summary": "no recipe recorded (export it again with `hoi export-backbone`)"}


def torchvision_hash(depth: int) -> str | None:
    """The sha256 prefix in the file name of torchvision's ImageNet V1 ResNet-``depth`` weights."""
    import torchvision.models as tvm

    weights = getattr(tvm, f"ResNet{depth}_Weights", None)
    match = TORCHVISION_FILE.match(Path(weights.IMAGENET1K_V1.url).name) if weights else None
    return match.group(2) if match else None


def check_backbones(weights_dir: str | Path, archs: Sequence[str],
                    allow_mixed: bool = False) -> dict[str, dict]:
    """``{arch: recipe}`` of ``weights_dir/<arch>.pth`` for every arch; RecipeError (one line) when
    a
    file is missing or, unless ``allow_mixed``, the recipes differ."""
    weights_dir = Path(weights_dir)
    missing = [a for a in archs if not (weights_dir / f"{a}.pth").is_file()]
    if missing:
        raise RecipeError(
            f"{weights_dir}: no backbone file for {', '.join(missing)} (expected <arch>.pth: `hoi "
            "export-backbone` "
            "output, or torchvision's own ResNet file for a plain ResNet; see docs/pretraining.md)")
    recipes = {a: recipe_of_file(weights_dir / f"{a}.pth") for a in archs}
    if len({r["id"] for r in recipes.values()}) > 1 and not allow_mixed:
        named = "; ".join(f"{a}: {r['summary']} [{r['id']}]" for a, r in recipes.items())
        raise RecipeError(f"backbones pretrained by different recipes: {named}. One table compares "
                          "one recipe; set ALLOW_MIXED_PRETRAINING=1 to go on anyway")
    return recipes


def table_note(recipes: Mapping[str, Mapping[str, Any]]) -> str:
    """The lines written under a results table: the one recipe, or each row's."""
    ids = {r["id"] for r in recipes.values()}
    if len(ids) == 1:
        r = next(iter(recipes.values()))
        return f"Pretraining, every row: {r['summary']} [{r['id']}]."
    lines = ["Pretraining recipes differ between rows (ALLOW_MIXED_PRETRAINING=1):", ""]
    for arch, r in recipes.items():
        top1 = f", top-1 {r['top1']:.2f}" if r.get("top1") is not None else ""
        lines.append(f"- {arch}: {r['summary']} [{r['id']}]{top1}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hoi.pretrain.recipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="folder of <arch>.pth backbone files")
    p.add_argument("--allow-mixed", action="store_true", help="go on when the recipes differ")
    p.add_argument("--out", default=None, help="write {arch: recipe} here (JSON) when the check "
                                               "passes")
    p.add_argument("archs", nargs="+")
    args = p.parse_args(argv)
    try:
        recipes = check_backbones(args.weights, args.archs, args.allow_mixed)
    except RecipeError as err:
        print(f"python -m hoi.pretrain.recipe: error: {err}", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(recipes, indent=1, default=str) + "\n")
        os.replace(tmp, out)
    for arch, r in recipes.items():
        print(f"{arch}: {r['summary']} [{r['id']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
