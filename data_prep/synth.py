"""A synthetic mini HICO-DET in the OFFICIAL raw layout, for the demo and the tests.

    python -m data_prep.synth --out DIR [--train 160 --test 60 --seed 0]

writes ``DIR/images/train2015/HICO_train2015_XXXXXXXX.jpg``, ``DIR/images/test2015/...``,
``DIR/anno_bbox.mat`` and ``DIR/anno.mat`` in the structure of the official release, so the
rest of the pipeline (``data_prep.convert`` onwards) cannot tell it from the real thing.

Pictures use HICO-DET's real label space, restricted to a few dozen HOIs whose verb can be
seen in the geometry: a person figure astride a horse, bicycle, motorcycle or elephant
(ride, with straddle and sit_on where HICO-DET has them), a small object at a hand (hold), a ball
at a foot (kick), a person seated on furniture (sit_on), a backpack or tie on the torso
(wear), and objects away from everybody (no_interaction). Images hold one to three people,
extra objects, clutter shapes and occluders. Some HOIs are drawn rarely, so that they have
fewer than 10 training pairs and the Rare / Non-Rare split means something. Everything is
determined by ``--seed``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from hoi.data import build_instances, hico_metadata
from hoi.data.anno_mat import write_anno_bbox_mat, write_anno_mat


@dataclass(frozen=True)
class Template:
    """One kind of interaction: the verbs annotated for it, the object, how it is drawn, and
    its relative frequency."""

    verbs: tuple[str, ...]
    obj: str
    relation: str  # ride | hold | kick | sit | wear | none
    weight: float


RIDE = ("ride", "sit_on", "straddle")
TEMPLATES: tuple[Template, ...] = (
    Template(("ride", "straddle"), "horse", "ride", 3.0),
    Template(RIDE, "bicycle", "ride", 3.0),
    Template(RIDE, "motorcycle", "ride", 2.0),
    Template(("ride",), "elephant", "ride", 0.35),  # rare
    Template(("hold",), "cup", "hold", 3.0),
    Template(("hold",), "bottle", "hold", 2.0),
    Template(("hold",), "umbrella", "hold", 2.0),
    Template(("hold",), "cell_phone", "hold", 2.0),
    Template(("hold",), "book", "hold", 1.5),
    Template(("hold",), "knife", "hold", 0.35),  # rare
    Template(("kick",), "sports_ball", "kick", 0.5),  # rare-ish
    Template(("sit_on",), "chair", "sit", 3.0),
    Template(("sit_on",), "bench", "sit", 2.0),
    Template(("sit_on",), "couch", "sit", 1.5),
    Template(("wear",), "backpack", "wear", 2.0),
    Template(("wear",), "tie", "wear", 1.5),
    Template(("no_interaction",), "horse", "none", 1.0),
    Template(("no_interaction",), "bicycle", "none", 1.0),
    Template(("no_interaction",), "cup", "none", 0.8),
    Template(("no_interaction",), "chair", "none", 1.0),
    Template(("no_interaction",), "umbrella", "none", 0.6),
    Template(("no_interaction",), "sports_ball", "none", 0.6),
    Template(("no_interaction",), "couch", "none", 0.25),  # rare
)

# object -> (width, height) as fractions of the person height, and its base colour
OBJECT_SIZE = {
    "horse": (1.3, 0.75), "bicycle": (1.1, 0.55), "motorcycle": (1.2, 0.6), "elephant": (1.6, 1.0),
    "cup": (0.13, 0.15), "bottle": (0.1, 0.26), "umbrella": (0.55, 0.45),
    "cell_phone": (0.09, 0.15),
    "book": (0.2, 0.16), "knife": (0.06, 0.24), "sports_ball": (0.22, 0.22), "chair": (0.5, 0.55),
    "bench": (0.95, 0.4), "couch": (1.2, 0.5), "backpack": (0.32, 0.32), "tie": (0.08, 0.3),
}
OBJECT_COLOUR = {
    "horse": (120, 72, 40), "bicycle": (30, 90, 200), "motorcycle": (200, 30,
                                                                     30), "elephant": (130, 130,
                                                                                       140),
    "cup": (240, 240, 250), "bottle": (30, 150, 60), "umbrella": (230, 60,
                                                                  160), "cell_phone": (20, 20, 25),
    "book": (60, 40, 160), "knife": (200, 200, 210), "sports_ball": (250, 140,
                                                                     20), "chair": (150, 100, 50),
    "bench": (110, 80, 60), "couch": (170, 40, 60), "backpack": (40, 70, 40), "tie": (180, 20, 40),
}
SPLITS = {"train": "train2015", "test": "test2015"}


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int],
            amount: int = 30) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


# ------------------------------------------------------------------ painters (box: x1, y1, x2, y2
# pixels)
def _paint_object(d: ImageDraw.ImageDraw, name: str, box: Sequence[float],
                  rng: np.random.Generator) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    c = _jitter(rng, OBJECT_COLOUR[name])
    dark = tuple(max(0, v - 70) for v in c)
    if name in ("horse", "elephant"):
        d.ellipse([x1 + 0.1 * w, y1 + 0.15 * h, x2 - 0.15 * w, y1 + 0.65 * h], fill=c)
        for fx in (0.18, 0.32, 0.6, 0.72):  # legs
            d.rectangle([x1 + fx * w, y1 + 0.55 * h, x1 + (fx + 0.07) * w, y2], fill=dark)
        d.ellipse([x2 - 0.28 * w, y1, x2, y1 + 0.35 * h], fill=c)  # head
        if name == "elephant":
            d.rectangle([x2 - 0.09 * w, y1 + 0.25 * h, x2, y1 + 0.85 * h], fill=dark)  # trunk
        else:
            d.rectangle([x1, y1 + 0.2 * h, x1 + 0.1 * w, y1 + 0.5 * h], fill=dark)  # tail
    elif name in ("bicycle", "motorcycle"):
        r = 0.22 * w
        for cx in (x1 + r, x2 - r):
            d.ellipse([cx - r, y2 - 2 * r, cx + r, y2],
                      outline=dark if name == "bicycle" else (20, 20, 20),
                      width=max(2, int(0.04 * w)), fill=None if name == "bicycle" else (40, 40, 40))
        d.line([x1 + r, y2 - r, x1 + 0.5 * w, y1 + 0.35 * h, x2 - r, y2 - r], fill=c,
               width=max(2, int(0.05 * w)))
        if name == "motorcycle":
            d.rectangle([x1 + 0.3 * w, y1 + 0.25 * h, x2 - 0.3 * w, y1 + 0.55 * h], fill=c)
        d.line([x2 - 0.3 * w, y1, x2 - 0.25 * w, y1 + 0.35 * h], fill=dark,
               width=max(2, int(0.03 * w)))
    elif name == "umbrella":
        d.pieslice([x1, y1, x2, y1 + h], 180, 360, fill=c)
        d.line([x1 + w / 2, y1 + h / 2, x1 + w / 2, y2], fill=(40, 40, 40),
               width=max(2, int(0.05 * w)))
    elif name == "sports_ball":
        d.ellipse([x1, y1, x2, y2], fill=c, outline=(30, 30, 30), width=2)
    elif name in ("chair", "bench", "couch"):
        d.rectangle([x1, y1 + 0.45 * h, x2, y1 + 0.62 * h], fill=c)  # seat
        d.rectangle([x1, y1, x1 + 0.15 * w if name == "chair" else x2, y1 + 0.45 * h],
                    fill=dark)  # back
        for fx in (0.03, 0.9):
            d.rectangle([x1 + fx * w, y1 + 0.6 * h, x1 + (fx + 0.07) * w, y2], fill=dark)
    elif name == "tie":
        d.polygon([(x1, y1), (x2, y1), (x1 + w / 2, y2)], fill=c)
    elif name == "bottle":
        d.rectangle([x1, y1 + 0.3 * h, x2, y2], fill=c)
        d.rectangle([x1 + 0.3 * w, y1, x2 - 0.3 * w, y1 + 0.3 * h], fill=dark)
    elif name == "cup":
        d.polygon([(x1, y1), (x2, y1), (x2 - 0.2 * w, y2), (x1 + 0.2 * w, y2)], fill=c,
                  outline=(90, 90, 200))
    elif name == "knife":
        d.polygon([(x1, y2), (x2, y2), (x1 + w / 2, y1)], fill=c)
        d.rectangle([x1, y2 - 0.3 * h, x2, y2], fill=(60, 30, 10))
    else:  # cell_phone, book, backpack: rectangles with a detail
        d.rectangle([x1, y1, x2, y2], fill=c, outline=dark, width=2)
        d.rectangle([x1 + 0.2 * w, y1 + 0.15 * h, x2 - 0.2 * w, y1 + 0.45 * h], fill=dark)


def _paint_person(d: ImageDraw.ImageDraw, box: Sequence[float], pose: str, side: int,
                  rng: np.random.Generator) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    skin = _jitter(rng, (225, 180, 150), 25)
    shirt = tuple(int(v) for v in rng.integers(0, 256, 3))
    trousers = _jitter(rng, (40, 50, 90), 30)
    limb = max(2, int(0.12 * w))
    head = 0.18 * h
    d.ellipse([cx - head / 2, y1, cx + head / 2, y1 + head], fill=skin)
    torso_bottom = y1 + (0.62 if pose != "sit" else 0.7) * h
    d.rectangle([cx - 0.3 * w, y1 + head, cx + 0.3 * w, torso_bottom], fill=shirt)
    hand_y = y1 + 0.45 * h
    if pose == "hold":  # arm out to the object's side
        d.line([cx + side * 0.25 * w, y1 + head * 1.4, x2 if side > 0 else x1, hand_y], fill=skin,
               width=limb)
        d.line([cx - side * 0.25 * w, y1 + head * 1.4, cx - side * 0.35 * w, torso_bottom],
               fill=skin, width=limb)
    else:
        for s in (-1, 1):
            d.line([cx + s * 0.28 * w, y1 + head * 1.4, cx + s * 0.45 * w, torso_bottom], fill=skin,
                   width=limb)
    if pose == "ride":  # astride: legs spread down both sides
        for s in (-1, 1):
            d.line([cx, torso_bottom, x1 if s < 0 else x2, y2], fill=trousers, width=limb)
    elif pose == "sit":  # thighs forward, shins down
        knee = (cx + side * 0.5 * w, torso_bottom)
        d.line([cx, torso_bottom, *knee], fill=trousers, width=limb)
        d.line([*knee, knee[0], y2], fill=trousers, width=limb)
    elif pose == "kick":
        d.line([cx - side * 0.15 * w, torso_bottom, cx - side * 0.2 * w, y2], fill=trousers,
               width=limb)
        d.line([cx + side * 0.15 * w, torso_bottom, x2 if side > 0 else x1, y2 - 0.12 * h],
               fill=trousers, width=limb)
    else:
        for s in (-1, 1):
            d.line([cx + s * 0.15 * w, torso_bottom, cx + s * 0.22 * w, y2], fill=trousers,
                   width=limb)


# ------------------------------------------------------------------ scene layout
def _place(template: Template, person_h: float, foot_x: float, ground: float, side: int,
           rng: np.random.Generator):
    """Boxes (person, object) in float pixels for one interaction, anchored at the feet."""
    ow, oh = (s * person_h * rng.uniform(0.85, 1.15) for s in OBJECT_SIZE[template.obj])
    pw = 0.38 * person_h
    rel = template.relation
    if rel == "ride":
        obj = [foot_x - ow / 2, ground - oh, foot_x + ow / 2, ground]
        p_bottom = obj[1] + 0.45 * oh
        person = [foot_x - pw / 2, p_bottom - 0.85 * person_h, foot_x + pw / 2, p_bottom]
    elif rel == "sit":
        obj = [foot_x - ow / 2, ground - oh, foot_x + ow / 2, ground]
        ph = 0.8 * person_h
        person = [foot_x - pw / 2, ground - ph, foot_x + pw / 2, ground]
    else:
        person = [foot_x - pw / 2, ground - person_h, foot_x + pw / 2, ground]
        if rel == "hold":
            hx = person[2] if side > 0 else person[0]
            hy = person[1] + 0.45 * person_h
            obj = [hx - ow / 2 + side * 0.3 * ow, hy - oh / 2, hx + ow / 2 + side * 0.3 * ow,
                   hy + oh / 2]
        elif rel == "kick":
            fx = person[2] + 0.6 * ow if side > 0 else person[0] - 0.6 * ow
            obj = [fx - ow / 2, ground - oh, fx + ow / 2, ground]
        elif rel == "wear":
            cx = foot_x + (side * 0.12 * pw if template.obj == "backpack" else 0)
            top = person[1] + 0.22 * person_h
            obj = [cx - ow / 2, top, cx + ow / 2, top + oh]
        else:  # none: placed later, away from everybody
            obj = None
    return person, obj


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _to_inclusive(box: Sequence[float], w: int, h: int) -> list[float]:
    """Float pixel box -> 1-based inclusive integer box inside the image."""
    x1, y1 = max(1, int(round(box[0])) + 1), max(1, int(round(box[1])) + 1)
    x2, y2 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    return [float(x1), float(y1), float(max(x1, x2)), float(max(y1, y2))]


def make_image(rng: np.random.Generator, meta) -> tuple[Image.Image, dict[str, list]]:
    """One picture and its GT pairs (annotation schema, boxes 1-based inclusive)."""
    w, h = int(rng.choice([360, 400, 480, 520])), int(rng.choice([300, 340, 380]))
    base = rng.integers(120, 230, 3)
    grad = np.linspace(0, 1, h)[:, None, None] * rng.integers(-60, 60, 3)
    noise = rng.normal(0, 8, (h, w, 3))
    canvas = np.clip(base + grad + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(canvas)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):  # clutter: shapes that are no object class
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 40)
        col = tuple(int(v) for v in rng.integers(60, 200, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([cx - r, cy - r * 0.6, cx + r,
                                                            cy + r * 0.6], fill=col)

    weights = np.array([t.weight for t in TEMPLATES])
    n_people = int(rng.choice([1, 2, 2, 3]))
    slot = w / n_people
    pairs: dict[str, list] = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
    drawn: list[tuple[str, list[float], str, int]] = []  # (kind, box, name/pose, side)
    placed: list[list[float]] = []
    far_objects: list[tuple[Template, int]] = []
    for k in range(n_people):
        template = TEMPLATES[int(rng.choice(len(TEMPLATES), p=weights / weights.sum()))]
        person_h = h * rng.uniform(0.45, 0.62)
        side = int(rng.choice([-1, 1]))
        foot_x = slot * (k + 0.5) + rng.uniform(-0.12, 0.12) * slot
        ground = h - rng.uniform(4, 0.12 * h)
        person, obj = _place(template, person_h, foot_x, ground, side, rng)
        pose = {"ride": "ride", "sit": "sit", "hold": "hold", "kick": "kick"}.get(template.relation,
                                                                                  "stand")
        if obj is not None:
            back_first = template.relation in ("ride", "sit")
            items = [("object", obj, template.obj, side), ("person", person, pose, side)]
            drawn.extend(items if back_first else items[::-1])
            placed.extend([person, obj])
            h_box, o_box = _to_inclusive(person, w, h), _to_inclusive(obj, w, h)
            for verb in template.verbs:
                v, o = meta.verbs.index(verb), meta.objects.index(template.obj)
                pairs["boxes_h"].append(h_box)
                pairs["boxes_o"].append(o_box)
                pairs["hoi"].append(int(meta.pair_to_hoi[o, v]))
                pairs["object"].append(o)
                pairs["verb"].append(v)
        else:
            drawn.append(("person", person, pose, side))
            placed.append(person)
            far_objects.append((template, len(drawn) - 1))
    for template, person_item in far_objects:  # no_interaction: somewhere free, not touching
        person = drawn[person_item][1]
        ph = person[3] - person[1]
        ow, oh = (s * ph for s in OBJECT_SIZE[template.obj])
        for _ in range(30):
            x = rng.uniform(0, max(1, w - ow))
            y = rng.uniform(0.05 * h, max(0.05 * h + 1, h - oh))
            box = [x, y, x + ow, y + oh]
            if not any(_overlap(box, p) for p in placed):
                break
        else:
            continue  # no free room: this person simply has no pair
        drawn.insert(0, ("object", box, template.obj, 1))
        placed.append(box)
        o = meta.objects.index(template.obj)
        v = meta.verbs.index("no_interaction")
        pairs["boxes_h"].append(_to_inclusive(person, w, h))
        pairs["boxes_o"].append(_to_inclusive(box, w, h))
        pairs["hoi"].append(int(meta.pair_to_hoi[o, v]))
        pairs["object"].append(o)
        pairs["verb"].append(v)
    for kind, box, what, side in drawn:
        if kind == "object":
            _paint_object(d, what, box, rng)
        else:
            _paint_person(d, box, what, side, rng)
    for _ in range(int(rng.integers(0, 3))):  # occluders over parts of the scene
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(10, 30)
        d.rectangle([cx - s, cy - s, cx + s, cy + s],
                    fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img, pairs


def check_templates() -> None:
    """Every template must name a real HICO-DET HOI; fail loudly if one does not."""
    meta = hico_metadata()
    for t in TEMPLATES:
        for verb in t.verbs:
            if meta.pair_to_hoi[meta.objects.index(t.obj), meta.verbs.index(verb)] < 0:
                raise ValueError(f"synthetic template ({verb}, {t.obj}) is not a HICO-DET HOI")


def synthesise(out: Path, counts: dict[str, int], seed: int = 0,
               progress: bool = True) -> dict[str, dict]:
    """Write the images and the official .mat files; return the annotation dicts per split."""
    check_templates()
    meta = hico_metadata()
    instances = {}
    for split_id, (split, n) in enumerate(counts.items()):
        folder = out / "images" / SPLITS[split]
        folder.mkdir(parents=True, exist_ok=True)
        names, sizes, all_pairs = [], [], []
        for i in tqdm(range(n), desc=f"synth {split}", unit="img", disable=not progress):
            rng = np.random.default_rng([seed, split_id, i])
            img, pairs = make_image(rng, meta)
            name = f"HICO_{SPLITS[split]}_{i + 1:08d}.jpg"
            img.save(folder / name, quality=92)
            names.append(name)
            sizes.append(list(img.size))
            all_pairs.append(pairs)
        instances[split] = build_instances(names, sizes, all_pairs)
    write_anno_bbox_mat(instances, out / "anno_bbox.mat")
    write_anno_mat(instances, out / "anno.mat")
    return instances


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.synth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for images/ and the .mat files")
    p.add_argument("--train", type=int, default=160, help="training images")
    p.add_argument("--test", type=int, default=60, help="test images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    instances = synthesise(out, {"train": args.train, "test": args.test}, args.seed)
    n_pairs = {s: sum(len(a["hoi"]) for a in d["annotation"]) for s, d in instances.items()}
    print(f"[synth] {out}: {args.train} train / {args.test} test images, pairs {n_pairs}; "
          f"anno_bbox.mat and anno.mat in the official structure", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
