"""The join between a results file and the annotation file it is scored against, checked
before any scoring (``hoi eval``, ``hoi diagnose``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hoi.data.metadata import hico_metadata
from hoi.evaluation.hoi_results import HOIResults
from hoi.provenance import annotation_fingerprint, annotation_mismatch, recorded_annotation, resolve


def results_for_annotation(detections: HOIResults, path: str | Path, anno_path: str | Path,
                           data: Mapping[str, Any],
                           allow_mismatch: bool = False) -> tuple[HOIResults, list[str]]:
    """``detections`` (read from ``path``) in the image order of annotation ``data`` (read from
    ``anno_path``), and the provenance mismatches the user accepted.

    Results of ``hoi test`` carry the annotation's fingerprint, which must match (unless
    ``allow_mismatch``). Every results file must fit by content: image names or indices,
    finite scores and boxes, ordered boxes, HOI and object ids (refused in one line naming
    ``path``); boxes reaching past their image are counted in one warning line, as the official
    code scores them.
    """
    accepted: list[str] = []
    if recorded_annotation(detections.meta) is not None:
        accepted = resolve([annotation_mismatch(path, detections.meta, anno_path,
                                                annotation_fingerprint(anno_path, data))],
                                                allow_mismatch)
    ordered = detections.to_annotation_order(data["filenames"], str(path))
    ordered.check(len(data["filenames"]), hico_metadata().hoi_object, str(path))
    outside = ordered.count_outside(data["size"])
    if outside:
        print(f"warning: {path}: {outside} of {len(detections)} detections have a box reaching "
              f"past its image (scored as they are, as the official code does)")
    return ordered, accepted
