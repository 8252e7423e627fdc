"""Provenance: what every file between the stages was made from, and the checks at the joins.

Each stage records, in what it writes, what it read; each consumer compares before any work:

- annotation fingerprint (:func:`annotation_fingerprint`): ``file``, ``sha256`` of the JSON file,
  ``num_images`` and ``images_sha256`` (of the image list with sizes it implies);
- detections (``provenance`` attribute of ``detections_X.h5``): ``annotation`` (fingerprint),
  ``source`` and its parameters (detector config, weights sha256, thresholds);
- features (``provenance`` attribute of ``features_X.h5``): ``annotation``, ``backbone`` (config),
  ``weights_sha256`` (or ``random`` with ``weights_seed``), ``input_size``, ``normalization``,
  ``layer``, ``dtype`` (:data:`FEATURE_FIELDS`);
- checkpoint (``provenance`` entry of a ``hoi train`` checkpoint): the provenance of the training
  annotation, detections and features, and the mismatches a user accepted;
- results (``meta`` of a results file): ``annotation`` fingerprint and the checkpoint they came
from.

Hashes are computed once, when a file is made; checking a 50 GB feature cache compares the
recorded strings and never re-reads it. A mismatch is one line naming both files and the field
that differs (:class:`ProvenanceMismatch`), and names the one way past every such check:
``--allow-mismatch`` (``hoi train``, ``test``, ``predict``, ``eval``, ``diagnose``; the config key
``data.allow_mismatch=true`` of a run); the accepted mismatches are recorded in what is written
next.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hoi.errors import UserError

ALLOW_FLAG = "--allow-mismatch"
# What makes two feature caches comparable: a model trained on one can be tested on the other.
FEATURE_FIELDS = ("backbone", "weights_sha256", "weights_seed", "input_size", "normalization",
                  "layer", "dtype")
RANDOM_WEIGHTS = "random"

log = logging.getLogger("hoi")
_FINGERPRINTS: dict[tuple[str, int, int], dict[str, Any]] = {}


class ProvenanceMismatch(UserError, ValueError):
    """Two files that do not belong together (or a file that cannot be checked)."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def images_sha256(filenames: Sequence[str], sizes: Sequence[Sequence[int]]) -> str:
    """sha256 of the image list an annotation implies (names and [w, h], in order)."""
    text = "\n".join(f"{n} {int(s[0])} {int(s[1])}" for n, s in zip(filenames, sizes))
    return hashlib.sha256(text.encode()).hexdigest()


def annotation_fingerprint(path: str | Path, data: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint of annotation file ``path`` whose loaded content is ``data`` (hashed once
    per process and file version)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = {
            "file": path.name,
            "sha256": file_sha256(path),
            "num_images": len(data["filenames"]),
            "images_sha256": images_sha256(data["filenames"], data["size"]),
        }
    return dict(_FINGERPRINTS[key])


def recorded_annotation(prov: Mapping[str, Any]) -> dict[str, Any] | None:
    """The annotation fingerprint recorded in a provenance record (older files recorded only
    ``annotation_sha256``), or None."""
    fp = prov.get("annotation")
    if isinstance(fp, Mapping) and "sha256" in fp:
        return dict(fp)
    if "annotation_sha256" in prov:
        return {"file": prov.get("annotation"), "sha256": prov["annotation_sha256"]}
    return None


def annotation_mismatch(artifact: str | Path, prov: Mapping[str, Any], anno_path: str | Path,
                        anno_fp: Mapping[str, Any]) -> str | None:
    """Why ``artifact`` (whose provenance is ``prov``) was not made from ``anno_path``, or None."""
    fp = recorded_annotation(prov)
    if fp is None:
        return (f"{artifact}: records no annotation fingerprint, so it cannot be checked against "
                f"{anno_path} (expected a file written by this project's data_prep stages)")
    if fp["sha256"] == anno_fp["sha256"]:
        return None
    same_images = fp.get("images_sha256") == anno_fp.get("images_sha256")
    detail = ("the same image list, other labels" if same_images else
              f"{fp.get('num_images', '?')} vs {anno_fp.get('num_images')} images")
    return (f"{artifact} was made from another annotation file than {anno_path}: field "
            "'annotation.sha256' "
            f"differs ({fp.get('file')} {fp['sha256'][:12]} vs {anno_fp['sha256'][:12]}; {detail})")


def field_mismatches(a_path: str | Path, a: Mapping[str, Any], b_path: str | Path,
                     b: Mapping[str, Any],
                     fields: Sequence[str]) -> list[str]:
    """One line per field of ``fields`` whose recorded values differ between two provenance
    records."""
    out = []
    for name in fields:
        va, vb = a.get(name), b.get(name)
        if _canonical(va) != _canonical(vb):
            out.append(f"{a_path} and {b_path} differ in field '{name}' ({_short(va)} vs "
                       f"{_short(vb)})")
    return out


def resolve(mismatches: Sequence[str], allow: bool, flag: str = ALLOW_FLAG,
            error: type[ProvenanceMismatch] = ProvenanceMismatch) -> list[str]:
    """Refuse (``error``, one line: the first mismatch, how many more, and ``flag``, the way to
    go on) unless ``allow``; with it, warn and return the accepted mismatches, to be recorded in
    what is written next."""
    mismatches = [m for m in mismatches if m]
    if not mismatches:
        return []
    if not allow:
        more = f" (and {len(mismatches) - 1} more differences)" if len(mismatches) > 1 else ""
        raise error(f"{mismatches[0]}{more}; pass {flag} to use them together anyway "
                    f"(it is recorded in what is written)")
    for m in mismatches:
        log.warning("accepted mismatch (%s): %s", flag, m)
    return list(mismatches)


def features_record(prov: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a features provenance that decide what the maps mean
    (:data:`FEATURE_FIELDS`)."""
    return {k: prov.get(k) for k in FEATURE_FIELDS}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any, limit: int = 80) -> str:
    text = _canonical(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def checkpoint_provenance(ckpt: Mapping[str, Any]) -> dict[str, Any] | None:
    """The provenance of the files a ``hoi train`` checkpoint was trained on (None for
    checkpoints of versions that did not record it)."""
    raw = ckpt.get("provenance")
    return json.loads(raw) if isinstance(raw, str) else None
