"""``hoi predict`` behind the command line: a trained run on images no annotation lists.

The images go through the same stages as a split, into ``OUT/work/``: an image list in the
annotation schema (no pairs), detections (Detectron2, or given ones), the backbone's maps
(the backbone rebuilt from the provenance of the run's training features: architecture,
weights checked by their sha256, input size, normalisation; random weights from their seed),
then ``hoi test``'s own inference (:func:`hoi.inference.test_split.run_test`), whose provenance
check confirms that the maps mean what the training maps meant. ``OUT/predictions.json``
holds the top HOIs of each image, ``OUT/<image stem>_hoi.png`` their drawings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from hoi.data.annotations import PAIR_KEYS, build_instances, save_annotations
from hoi.data.cache import FeatureWriter, ImageProposals, ProposalFile, write_proposals
from hoi.data.images import ImageError, ImageListDataset, backbone_input, read_image_size
from hoi.data.metadata import hico_metadata
from hoi.detector import (
    DetectorSettings,
    Detectron2Input,
    build_detector,
    detect_batch,
    resolve_weights,
)
from hoi.engine.distributed import DistInfo
from hoi.engine.logging import LOGGER_NAME
from hoi.errors import UserError
from hoi.evaluation import HOIResults
from hoi.hoi_config import HOITrainConfig
from hoi.inference.test_split import run_test
from hoi.models.extractor import TORCHVISION_PREFIX, extract_maps, map_shape, rebuild_extractor
from hoi.provenance import (
    ALLOW_FLAG,
    RANDOM_WEIGHTS,
    annotation_fingerprint,
    checkpoint_provenance,
    file_sha256,
    resolve,
)
from hoi.vis.hoi_drawing import save_detection_image, top_detections

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT = "images"
log = logging.getLogger(LOGGER_NAME)


def collect_images(sources: Sequence[str | Path]) -> list[Path]:
    """Image files of ``sources`` (folders: their images, sorted; files as given)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(
                    f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            paths += found
        elif source.is_file():
            paths.append(source)
        else:
            raise ImageError(f"image or folder not found: {source}")
    names = [p.name for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ImageError(f"{len(dup)} image file names occur twice among --images, e.g. {dup[:3]} "
                         f"(expected unique names: they key every output)")
    return paths


def _loader(paths: list[Path], transform, sizes: list[list[int]], batch_size: int, workers: int,
            collate=None) -> DataLoader:
    dataset = ImageListDataset("/", [str(p.resolve()) for p in paths], range(len(paths)), transform,
                               sizes,
                               "their decoded size")
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)


BORDER_SLACK = 1.0  # pixels a box of given detections may reach past its image (rounding)


class DetectionSizeError(UserError, ValueError):
    """Given detections made for another size of an image than the one decoded."""


def size_mismatches(dets: ProposalFile, paths: Sequence[Path],
                    sizes: Sequence[Sequence[int]]) -> list[str]:
    """One line per image whose decoded size [w, h] in ``sizes`` is not the one its detections in
    ``dets`` were made for: the size the file records for it where it records sizes, else boxes
    reaching past the decoded image (detections are clipped to the image they were made on, so
    a box beyond it means another, larger copy of the image)."""
    recorded = getattr(dets, "image_sizes", None)
    out = []
    for path, (w, h) in zip(paths, sizes):
        i = dets.index[path.name]
        rw, rh = (int(v) for v in recorded[i]) if recorded is not None else (0, 0)
        if (rw, rh) != (0, 0):  # a recorded size ([0, 0]: unknown, as HAKE's images without one)
            if (rw, rh) != (int(w), int(h)):
                out.append(f"{path}: decoded size {w}x{h}, but {dets.path} holds detections "
                           f"made for it at {rw}x{rh}")
            continue
        boxes = dets[i].boxes
        if len(boxes):
            x2, y2 = float(boxes[:, 2].max()), float(boxes[:, 3].max())
            if x2 > w + BORDER_SLACK or y2 > h + BORDER_SLACK:
                out.append(f"{path}: decoded size {w}x{h}, but its detections in {dets.path} "
                           f"reach x2={x2:.0f}, y2={y2:.0f}, past the image: they were made for "
                           f"another (larger) copy of it")
    return out


def given_proposals(path: str | Path, names: list[str], paths: Sequence[Path] | None = None,
                    sizes: Sequence[Sequence[int]] | None = None,
                    ) -> tuple[list[ImageProposals], dict[str, Any]]:
    """The detections of ``names`` from a detections file of ours (matched by file name), refused
    in one line if one of the images (``paths``, decoded ``sizes``) is not the image they were
    made for (:func:`size_mismatches`)."""
    dets = ProposalFile(path)
    missing = [n for n in names if n not in dets.index]
    if missing:
        raise UserError(f"{path}: no detections for {len(missing)} of the {len(names)} images, "
                        f"e.g. {missing[:3]} (expected a detections file listing these file names)")
    if paths is not None and sizes is not None:
        wrong = size_mismatches(dets, paths, sizes)
        if wrong:
            more = f" ({len(wrong)} of the {len(names)} images differ)" if len(wrong) > 1 else ""
            raise DetectionSizeError(
                f"{wrong[0]}{more}; expected the images the detections were made for (the "
                f"originals, not resized copies), or leave out --detections to detect on these")
    return [dets.by_name(n) for n in names], {"source": "given", "file": str(path),
                                              "from": dets.provenance}


def checked_features_record(recorded: Mapping[str, Any], checkpoint: str | Path,
                            backbone_weights: str | Path | None,
                            allow_mismatch: bool) -> tuple[dict[str, Any], list[str]]:
    """The features provenance to rebuild the backbone from, and the mismatches accepted: a
    weights file whose sha256 is not the recorded one is refused (one line naming
    ``--allow-mismatch``), or with ``allow_mismatch`` used anyway and recorded."""
    recorded = dict(recorded)
    sha = str(recorded.get("weights_sha256"))
    if sha == RANDOM_WEIGHTS or sha.startswith(TORCHVISION_PREFIX):
        return recorded, []
    candidate = Path(backbone_weights) if backbone_weights else Path(str(recorded.get("weights")))
    if not candidate.is_file():
        return recorded, []  # rebuild_extractor says what to pass
    found = file_sha256(candidate)
    if found == sha:
        return recorded, []
    accepted = resolve([f"{candidate}: sha256 {found[:12]} is not the {sha[:12]} of the weights "
                        f"that made the training features of {checkpoint} (expected the same "
                        f"backbone file)"], allow_mismatch, ALLOW_FLAG)
    recorded.update(weights=str(candidate), weights_sha256=found)
    return recorded, accepted


def detector_proposals(paths: list[Path], sizes: list[list[int]], settings: DetectorSettings,
                          device: torch.device, batch_size: int,
                          workers: int) -> tuple[list[ImageProposals], dict]:
    weights = resolve_weights(settings)
    model, cfg = build_detector(settings, device, weights)
    out: list[ImageProposals] = []
    for batch in _loader(paths, Detectron2Input(cfg), sizes, batch_size, workers,
                         collate=lambda b: b):
        out += detect_batch(model, [inp for _, inp in batch])
    return out, {"source": "detectron2", **settings.provenance(weights)}


def hoi_rows(det: HOIResults, index: int, top_k: int, min_score: float) -> list[dict[str, Any]]:
    """The ``top_k`` best HOIs of image ``index`` with score >= ``min_score``, as JSON records."""
    meta = hico_metadata()
    return [{"human_box": det.boxes_h[r].tolist(), "object_box": det.boxes_o[r].tolist(),
             "object": meta.objects[int(det.object[r])],
             "verb": meta.verbs[int(meta.hoi_verb[det.hoi[r]])],
             "hoi": int(det.hoi[r]), "score": float(det.score[r])}
            for r in top_detections(det, index, top_k, min_score)]


def predict_images(cfg: HOITrainConfig, ckpt: Mapping[str, Any], checkpoint: str | Path,
                   images: Sequence[str | Path], out: str | Path, dist: DistInfo, *,
                   detector: DetectorSettings | None = None, proposals: str | Path | None = None,
                   top_k: int = 5, score_thresh: float = 0.1,
                   backbone_weights: str | Path | None = None,
                   batch_size: int = 4, workers: int = 0, allow_mismatch: bool = False) -> Path:
    """Write ``out``/predictions.json and one drawing per image; returns the JSON's path.

    Args:
        cfg, ckpt, checkpoint: the run config, the loaded ``hoi train`` checkpoint and its path.
        images: image files, or folders whose images are all taken.
        detector: the Detectron2 settings of the proposals, unless ``proposals`` (a proposals
            file of ours holding these file names) is given.
        top_k, score_thresh: the HOIs kept per image. backbone_weights: the backbone file where
            the one the run recorded is not at its recorded path (checked by its sha256).
        allow_mismatch: use a backbone file whose sha256 is not the recorded one anyway
            (recorded in predictions.json and the results file).
    """
    out, work = Path(out), Path(out) / "work"
    trained_on = checkpoint_provenance(ckpt)
    if trained_on is None or not trained_on.get("features"):
        raise UserError(f"{checkpoint}: records no provenance of its training features, so the "
                        "backbone "
                        f"cannot be rebuilt (expected a checkpoint of this version of hoi train)")
    if detector is None and proposals is None:
        raise ValueError("predict_images needs a detector or a proposals file")
    recorded, accepted = checked_features_record(trained_on["features"], checkpoint,
                                                 backbone_weights, allow_mismatch)
    extractor, feat_prov = rebuild_extractor(recorded, str(checkpoint), backbone_weights)
    paths = collect_images(images)
    names, sizes = [p.name for p in paths], [list(read_image_size(p)) for p in paths]
    work.mkdir(parents=True, exist_ok=True)
    anno_path = work / f"instances_{SPLIT}.json"
    save_annotations(build_instances(names, sizes, [{k: [] for k in PAIR_KEYS} for _ in names]),
                     anno_path)
    fingerprint = annotation_fingerprint(anno_path, {"filenames": names, "size": sizes})
    log.info("%d images; backbone rebuilt from %s (%s)", len(paths), checkpoint,
             feat_prov["weights"])

    if proposals is not None:
        dets, det_prov = given_proposals(proposals, names, paths, sizes)
    else:
        dets, det_prov = detector_proposals(paths, sizes, detector, dist.device, batch_size,
                                            workers)
    det_path = work / f"detections_{SPLIT}.h5"
    write_proposals(det_path, names, dets,
                    {"kind": "detections", **det_prov, "annotation": fingerprint}, sizes)

    extractor.to(dist.device)
    input_size = feat_prov["input_size"]
    norm = feat_prov["normalization"]
    feat_path = work / f"features_{SPLIT}.h5"
    feat_path.unlink(missing_ok=True)  # made anew each time: the images may have changed
    writer = FeatureWriter(feat_path, names, sizes, map_shape(extractor, input_size),
                           {**feat_prov, "annotation": fingerprint})
    transform = lambda img: backbone_input(img, input_size, norm["mean"], norm["std"])  # noqa: E731
    for indices, maps in extract_maps(extractor,
                                      _loader(paths, transform, sizes, batch_size, workers),
                                      dist.device):
        for i, fmap in zip(indices, maps):
            writer.write(i, fmap)
    writer.close()

    results = run_test(cfg, ckpt, checkpoint, work / "results.npz", dist, split=SPLIT,
                       annotations=anno_path,
                       detections=det_path, features=feat_path)
    det = HOIResults.load(results)
    records = []
    for i, (path, (w, h)) in enumerate(zip(paths, sizes)):
        rows = hoi_rows(det, i, top_k, score_thresh)
        records.append({"file": str(path), "width": w, "height": h, "hois": rows})
        save_detection_image(path, det, top_detections(det, i, top_k, score_thresh), out)
    target = out / "predictions.json"
    target.write_text(json.dumps({"checkpoint": str(checkpoint), "top_k": top_k,
                                  "score_thresh": score_thresh,
                                  "detections": det_prov["source"],
                                  "accepted_mismatches": accepted + list(
                                      det.meta.get("accepted_mismatches") or []),
                                  "images": records}, indent=1))
    n = sum(len(r["hois"]) for r in records)
    log.info("%d HOIs over %d images -> %s (drawings beside it)", n, len(records), target)
    return target


__all__ = ["predict_images", "collect_images", "hoi_rows"]
