"""Convert the official HICO-DET ``anno_bbox.mat`` into ``instances_{train,test}2015.json``.

    python -m data_prep.convert --mat anno_bbox.mat --out DIR [--anno-mat anno.mat]
    python -m data_prep.convert --hake hico-det-instance-level.tar.gz --out DIR [--images DIR]

Every ``connection`` row of a visible ``hoi(j)`` entry becomes one pair; invisible entries
are left out; boxes are kept as they are (1-based inclusive). The rare / non-rare split is
computed from the training split (fewer than 10 training pairs = rare). With ``--anno-mat``,
its ``list_action`` must be the official HOI order and its image lists must match.
``--hake`` converts HAKE's re-release of the training split instead (:mod:`hoi.data.hake`;
117,654 pairs, 217 fewer than the official file: prefer ``--mat`` when you have it); the 485
images without labels take their size from ``--images`` (else it is recorded as unknown).
A file already in the JSON schema (docs/architecture.md#annotation-files) is accepted as it is: it
is checked and
copied. A ``convert_info.json`` beside the outputs records the inputs and their sha256.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from hoi.data.anno_mat import (
    check_list_action,
    official_to_instances,
    read_anno_bbox_mat,
    read_list_action,
    train_pair_counts,
)
from hoi.data.annotations import AnnotationError, load_annotations, save_annotations
from hoi.data.hake import hake_to_instances, read_hake
from hoi.data.validation import check_annotations, load_valid_annotations
from hoi.errors import run_main
from hoi.provenance import file_sha256

OUTPUT_NAMES = {"train": "instances_train2015.json", "test": "instances_test2015.json"}
INFO_NAME = "convert_info.json"


def _check_anno_mat(anno_mat: Path, splits: dict) -> None:
    import scipy.io

    check_list_action(read_list_action(anno_mat), str(anno_mat))
    mat = scipy.io.loadmat(str(anno_mat), squeeze_me=True,
                           variable_names=["list_train", "list_test"])
    for split, images in splits.items():
        var = f"list_{split}"
        if var not in mat:
            continue
        names = [str(n) for n in mat[var].ravel()]
        got = [im.filename for im in images]
        if names != got:
            k = next((i for i, (a, b) in enumerate(zip(names, got)) if a != b),
                     min(len(names), len(got)))
            raise AnnotationError(f"{anno_mat}: {var} ({len(names)} names) differs from "
                                  f"bbox_{split} ({len(got)} records) at record {k + 1}")


def convert_anno_bbox(mat_path: str | Path, out_dir: str | Path,
                      anno_mat: str | Path | None = None) -> dict[str, Path]:
    """Convert ``anno_bbox.mat`` into JSON files in ``out_dir``; returns split -> written path.

    The training split defines the rare classes for both outputs; without it, the packaged
    official training counts are used.
    """
    mat_path, out_dir = Path(mat_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if mat_path.suffix == ".json":  # already in the schema: check it, keep it as it is
        load_valid_annotations(mat_path)
        target = out_dir / mat_path.name
        if target.resolve() != mat_path.resolve():
            shutil.copyfile(mat_path, target)
        return {"as_is": target}
    splits = read_anno_bbox_mat(mat_path)
    if anno_mat is not None:
        _check_anno_mat(Path(anno_mat), splits)
    counts = train_pair_counts(splits["train"]) if "train" in splits else None
    converted = {split: official_to_instances(images, counts) for split, images in splits.items()}
    for split, data in converted.items():  # refuse before writing anything: nothing half-converted
        check_annotations(data, f"{mat_path} (bbox_{split})")
    written = {}
    for split, data in converted.items():
        path = out_dir / OUTPUT_NAMES[split]
        save_annotations(data, path)
        written[split] = path
    info = {
        "stage": "data_prep.convert",
        "inputs": {str(p): file_sha256(p) for p in [mat_path] + ([anno_mat] if anno_mat else [])},
        "rare_split_from": "train split of the input" if counts is not None
        else "packaged official counts",
        "outputs": {split: str(p) for split, p in written.items()},
    }
    (out_dir / INFO_NAME).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return written


def convert_hake(path: str | Path, out_dir: str | Path,
                 images: str | Path | None = None) -> dict[str, Path]:
    """Convert HAKE's training annotations into ``out_dir/instances_train2015.json``; returns
    ``{"train": path}``. Validated before anything is written."""
    path, out_dir = Path(path), Path(out_dir)
    data, unknown = hake_to_instances(read_hake(path), str(path), images)
    check_annotations(data, f"{path} (converted)")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / OUTPUT_NAMES["train"]
    save_annotations(data, target)
    info = {
        "stage": "data_prep.convert",
        "inputs": {str(path): file_sha256(path)},
        "source": "HAKE hico-det-instance-level (training split; 217 pairs fewer than the official "
                  "anno_bbox.mat)",
        "rare_split_from": "train split of the input",
        "sizes_unknown": {"count": len(unknown), "images": [data["filenames"][i] for i in unknown],
                          "why": "no label and no --images: recorded as [0, 0]; training leaves "
                                 "them out"},
        "outputs": {"train": str(target)},
    }
    (out_dir / INFO_NAME).write_text(json.dumps(info, indent=1), encoding="utf-8")
    if unknown:
        print(f"warning: {len(unknown)} images have no label, hence no size in {path}: recorded as "
              "[0, 0] "
              f"(unknown); detect and extract use the decoded size, training leaves them out. "
              f"Pass --images DIR to record their sizes.")
    return {"train": target}


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.convert",
                                     description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mat", type=Path,
                        help="official anno_bbox.mat (or an instances_*.json already in the "
                             "schema)")
    source.add_argument("--hake", type=Path,
                        help="HAKE's hico-det-instance-level.tar.gz (or its JSON): the training "
                             "split")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--anno-mat", type=Path, default=None, help="official anno.mat "
                                                                    "(list_action check)")
    parser.add_argument("--images", type=Path, default=None,
                        help="with --hake: the train2015 image folder (sizes of the images without "
                             "labels)")
    args = parser.parse_args(argv)
    if args.hake is not None:
        written = convert_hake(args.hake, args.out, args.images)
    else:
        written = convert_anno_bbox(args.mat, args.out, args.anno_mat)
    for split, path in written.items():
        data = load_annotations(path)
        pairs = sum(len(a["hoi"]) for a in data["annotation"])
        print(f"{split}: {path} ({len(data['filenames'])} images, {pairs} pairs, "
              f"{len(data['empty'])} without pairs, {len(data['rare'])} rare classes)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
