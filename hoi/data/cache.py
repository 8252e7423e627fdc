"""HDF5 files between the stages (docs/architecture.md#proposal-files, #feature-files): object
detections and backbone
feature maps, written resumably and read lazily.

Detections ``detections_{split}.h5`` (final form): ``filenames`` (N,), ``offsets`` (N+1,),
``boxes`` (M, 4) float32 in the annotation convention (1-based inclusive pixels of the
original image), ``scores`` (M,) float32, ``labels`` (M,) int64 HICO object index (person = 49).
While a run is in progress they live in ``<file>.partial`` as padded per-image arrays with a
``done`` flag; :meth:`ProposalWriter.finalize` writes the ragged file atomically.

Features ``features_{split}.h5``: ``features`` (N, C, H, W) float16 chunked one image per
chunk (the chunk index is complete when the file is made, so that later writes touch only
data, never the file's index structures; the chunks are never filled, so the file is made in
well under a second and holds disk blocks only for written maps), ``filenames``,
``image_sizes`` (N, 2) as [w, h], ``done`` (N,) uint8.

Both writers make a new file under ``<file>.tmp.<host>-<pid>`` and rename it when complete, so a
kill while a file is made leaves no half-made file; a rerun deletes the temporary files of
processes that no longer run (and ``<file>.tmp`` of older versions), never a live writer's.

Both carry a ``provenance`` attribute (JSON): what made them (config, weights and their sha256,
thresholds, code version). A writer reopening a file refuses one made by something else, so a
resumed run never mixes two configurations.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hoi.data.metadata import PERSON_OBJECT
from hoi.engine.disk import disk_full_as_error, remove_stale
from hoi.engine.run_lock import tag_is_stale, temp_tag
from hoi.errors import UserError

STR_DTYPE = h5py.string_dtype("utf-8")


class CacheError(UserError, ValueError):
    """A cache file that is missing, malformed or made by another configuration."""


def _provenance(f: h5py.File) -> dict[str, Any]:
    return json.loads(f.attrs.get("provenance", "{}"))


def _check_same(path: Path, what: str, found: Any, expected: Any) -> None:
    if found != expected:
        raise CacheError(
            f"{path}: {what} differ from this run's (file: {found!r}; this run: {expected!r}). "
            f"It was made by another configuration: delete it or choose another --out."
        )


def _filenames(f: h5py.File) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in f["filenames"][()]]


@dataclass
class ImageProposals:
    """Detections of one image: ``boxes`` (K, 4) float32 1-based inclusive, ``scores`` (K,),
    ``labels`` (K,) HICO object indices."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.labels)):
            raise ValueError(
                f"boxes, scores and labels differ in length: {len(self.boxes)}, "
                f"{len(self.scores)}, {len(self.labels)}"
            )

    def __len__(self) -> int:
        return len(self.scores)

    def __add__(self, other: ImageProposals) -> ImageProposals:
        """These proposals followed by ``other``'s."""
        return ImageProposals(np.concatenate([self.boxes, other.boxes]),
                              np.concatenate([self.scores, other.scores]),
                              np.concatenate([self.labels, other.labels]))


def gt_proposals(record: Mapping[str, Any], score: float = 1.0) -> ImageProposals:
    """The distinct GT boxes of one image's annotation record (``boxes_h``, ``boxes_o``,
    ``object``) as proposals of score ``score``: human boxes as persons, object boxes with their
    object class, in order of first appearance."""
    boxes = np.asarray(list(record["boxes_h"]) + list(record["boxes_o"]),
                       dtype=np.float32).reshape(-1, 4)
    labels = np.asarray([PERSON_OBJECT] * len(record["boxes_h"]) + list(record["object"]),
                        dtype=np.int64)
    if len(boxes):
        keyed = np.concatenate([boxes, labels[:, None].astype(np.float32)], axis=1)
        _, first = np.unique(keyed, axis=0, return_index=True)
        keep = np.sort(first)
        boxes, labels = boxes[keep], labels[keep]
    return ImageProposals(boxes, np.full(len(boxes), score, dtype=np.float32), labels)


def write_proposals(
    path: str | Path,
    filenames: Sequence[str],
    detections: Sequence[ImageProposals],
    provenance: dict[str, Any],
    image_sizes: Sequence[Sequence[int]] | None = None,
) -> None:
    """Write a final (ragged) detections file atomically (a temporary file, then rename);
    ``image_sizes`` ([w, h] per image, [0, 0] unknown) records what the detections were made
    for (``hoi predict --detections`` checks images against it)."""
    path = Path(path)
    if len(filenames) != len(detections):
        raise ValueError(f"{len(filenames)} filenames but {len(detections)} detection sets")
    counts = np.array([len(d) for d in detections], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    empty = ImageProposals(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    cat = lambda key: np.concatenate([getattr(d, key) for d in [*detections, empty]])  # noqa: E731
    def fill(f: h5py.File) -> None:
        f.create_dataset("filenames", data=list(filenames), dtype=STR_DTYPE)
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("boxes", data=cat("boxes").astype(np.float32))
        f.create_dataset("scores", data=cat("scores").astype(np.float32))
        f.create_dataset("labels", data=cat("labels").astype(np.int64))
        if image_sizes is not None:
            f.create_dataset("image_sizes", data=np.asarray(image_sizes, dtype=np.int64)
                             .reshape(len(filenames), 2))
        f.attrs["provenance"] = json.dumps(provenance, sort_keys=True)

    _create_then_rename(path, fill)


def temp_path(path: Path) -> Path:
    """Where this process makes a file before renaming it to ``path``: ``<path>.tmp.<host>-<pid>``
    (:func:`hoi.engine.run_lock.temp_tag`)."""
    return path.with_name(f"{path.name}.tmp.{temp_tag()}")


def stale_temps(path: Path) -> list[Path]:
    """The temporary files of ``path`` that may be deleted: this process's, those of processes of
    this machine that no longer run, and ``<path>.tmp`` (older versions); never a live writer's."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    legacy = path.with_name(path.name + ".tmp")
    prefix = f"{path.name}.tmp."
    tagged = [p for p in path.parent.glob(glob.escape(prefix) + "*")
              if tag_is_stale(p.name[len(prefix):])]
    return ([legacy] if legacy.is_file() else []) + tagged


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete :func:`stale_temps` of ``path``; returns those deleted."""
    return remove_stale(stale_temps(path))


def _create_then_rename(path: Path, fill: Any) -> None:
    """Make an HDF5 file at ``path`` with ``fill(h5py.File)``: built under :func:`temp_path` and
    renamed when complete, so that a kill at any moment leaves either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_path(path)
    try:
        with disk_full_as_error(path, "writing the file"), h5py.File(tmp, "w") as f:
            fill(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ProposalFile:
    """Read access to a final detections file. ``file[i]`` -> :class:`ImageProposals`.

    The whole file is read into memory at open (a few hundred MB for HICO-DET at most).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            partial = self.path.with_name(self.path.name + ".partial")
            hint = (f" (an unfinished run left {partial}: rerun the detect stage)"
                    if partial.exists() else "")
            raise CacheError(f"detections file not found: {self.path}{hint}")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in ("filenames", "offsets", "boxes", "scores",
                                       "labels") if k not in f]
                if missing:
                    raise CacheError(f"{self.path}: not a detections file, missing datasets "
                                     f"{missing}")
                self.filenames = _filenames(f)
                self.offsets = f["offsets"][()]
                self.boxes = f["boxes"][()]
                self.scores = f["scores"][()]
                self.labels = f["labels"][()]
                # [w, h] per image the detections were made for; None in files made before
                self.image_sizes = f["image_sizes"][()] if "image_sizes" in f else None
                self.provenance = _provenance(f)
        except OSError as err:
            raise CacheError(f"{self.path}: not a readable HDF5 file ({err})") from err
        if len(self.offsets) != len(self.filenames) + 1 or self.offsets[-1] != len(self.boxes):
            raise CacheError(
                f"{self.path}: offsets ({len(self.offsets)} entries, last {self.offsets[-1]}) do "
                f"not fit {len(self.filenames)} images and {len(self.boxes)} boxes"
            )
        self.index = {name: i for i, name in enumerate(self.filenames)}

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, i: int) -> ImageProposals:
        a, b = self.offsets[i], self.offsets[i + 1]
        return ImageProposals(self.boxes[a:b], self.scores[a:b], self.labels[a:b])

    def by_name(self, filename: str) -> ImageProposals:
        if filename not in self.index:
            raise CacheError(f"{self.path}: no detections for image {filename!r}")
        return self[self.index[filename]]


class _DoneFlags:
    """The per-image ``done`` dataset of a resumable writer: images written since the last
    :meth:`flush` are marked done only after their data is flushed, so a kill never marks a
    half-written image."""

    file: h5py.File
    filenames: list[str]

    def _load_done(self) -> None:
        # one handle: its writes are flushed by flush(), errors raised there
        self._done = self.file["done"]
        self.done = self._done[()].astype(bool)
        self._new_done: list[int] = []

    def pending(self, indices: Iterable[int] | None = None) -> list[int]:
        """Image indices (of ``indices``, default all) not yet done."""
        idx = range(len(self.filenames)) if indices is None else indices
        return [i for i in idx if not self.done[i]]

    def flush(self) -> None:
        """Make written images durable, then mark them done."""
        with disk_full_as_error(self.file.filename, "writing"):
            self.file.flush()
            for i in self._new_done:
                self._done[i] = 1
                self.done[i] = True
            self.file.flush()
        self._new_done = []


class ProposalWriter(_DoneFlags):
    """Resumable writer: per-image results go to ``<path>.partial`` with a done flag.

    Args:
        path: the final file to produce.
        filenames: all images of the split, in annotation order.
        max_per_image: padding size (the detector's detections-per-image cap).
        provenance: what makes these detections; must equal a partial file's to resume it.
    """

    def __init__(
        self, path: str | Path, filenames: Sequence[str], max_per_image: int,
        provenance: dict[str, Any]
    ) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.filenames = list(filenames)
        self.max_per_image = max_per_image
        self.provenance = provenance
        n = len(self.filenames)
        if self.partial.exists():
            self.file = h5py.File(self.partial, "r+")
            _check_same(self.partial, "image lists", _filenames(self.file), self.filenames)
            _check_same(self.partial, "provenance", _provenance(self.file),
                        json.loads(json.dumps(provenance)))
            _check_same(self.partial, "padding sizes", self.file["scores"].shape[1], max_per_image)
        else:
            def fill(f: h5py.File) -> None:
                f.create_dataset("filenames", data=self.filenames, dtype=STR_DTYPE)
                f.create_dataset("boxes", (n, max_per_image, 4), np.float32, fillvalue=0)
                f.create_dataset("scores", (n, max_per_image), np.float32, fillvalue=0)
                f.create_dataset("labels", (n, max_per_image), np.int64, fillvalue=0)
                f.create_dataset("counts", (n,), np.int64, fillvalue=0)
                f.create_dataset("done", (n,), np.uint8, fillvalue=0)
                f.attrs["provenance"] = json.dumps(provenance, sort_keys=True)

            _create_then_rename(self.partial, fill)
            self.file = h5py.File(self.partial, "r+")
        remove_stale_temps(self.partial)
        remove_stale_temps(self.path)
        # one handle per dataset, kept open: their buffered writes are flushed (and a full disk
        # raised) by flush(), not by the destructor of a temporary handle, which only prints
        self._data = {k: self.file[k] for k in ("boxes", "scores", "labels", "counts")}
        self._load_done()

    def write(self, index: int, det: ImageProposals) -> None:
        """Store one image's detections; they count as done after the next :meth:`flush`."""
        k = len(det)
        if k > self.max_per_image:
            raise ValueError(f"image {self.filenames[index]}: {k} detections > cap "
                             f"{self.max_per_image}")
        with disk_full_as_error(self.partial, "writing detections"):
            self._data["boxes"][index, :k] = det.boxes
            self._data["scores"][index, :k] = det.scores
            self._data["labels"][index, :k] = det.labels
            self._data["counts"][index] = k
        self._new_done.append(index)

    def read(self, index: int) -> ImageProposals:
        k = int(self._data["counts"][index])
        return ImageProposals(self._data["boxes"][index, :k], self._data["scores"][index, :k],
                               self._data["labels"][index, :k])

    def finalize(self, image_sizes: Sequence[Sequence[int]] | None = None) -> Path:
        """Write the final ragged file (all images must be done; ``image_sizes`` as in
        :func:`write_proposals`) and remove the partial file."""
        self.flush()
        if not self.done.all():
            missing = [self.filenames[i] for i in np.flatnonzero(~self.done)[:5]]
            raise CacheError(f"{self.partial}: {int((~self.done).sum())} images not done yet, e.g. "
                             f"{missing}")
        dets = [self.read(i) for i in range(len(self.filenames))]
        write_proposals(self.path, self.filenames, dets, self.provenance, image_sizes)
        self.close()
        self.partial.unlink()
        return self.path

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()


class FeatureWriter(_DoneFlags):
    """Resumable writer of ``features_{split}.h5`` (see the module docstring).

    Args:
        path: the features file (created, or reopened to resume).
        filenames, image_sizes: the split's images (annotation order) and their [w, h].
        shape: (C, H, W) of one image's feature map.
        provenance: what makes these features; must equal an existing file's to resume it.
    """

    def __init__(
        self,
        path: str | Path,
        filenames: Sequence[str],
        image_sizes: Sequence[Sequence[int]],
        shape: tuple[int, int, int],
        provenance: dict[str, Any],
    ) -> None:
        self.path = Path(path)
        self.filenames = list(filenames)
        n = len(self.filenames)
        if self.path.exists():
            try:
                self.file = h5py.File(self.path, "r+")
            except OSError as err:
                raise CacheError(f"{self.path}: cannot reopen to resume ({err})") from err
            _check_same(self.path, "image lists", _filenames(self.file), self.filenames)
            _check_same(self.path, "provenance", _provenance(self.file),
                        json.loads(json.dumps(provenance)))
            _check_same(self.path, "feature shapes", tuple(self.file["features"].shape[1:]),
                        tuple(shape))
        else:
            def fill(f: h5py.File) -> None:
                f.create_dataset("filenames", data=self.filenames, dtype=STR_DTYPE)
                f.create_dataset("image_sizes",
                                 data=np.asarray(image_sizes, dtype=np.int64).reshape(n, 2))
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_chunk((1, *shape))
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # index complete from the start
                # no zeros written: creation is instant
                dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
                space = h5py.h5s.create_simple((n, *shape))
                h5py.h5d.create(f.id, b"features", h5py.h5t.IEEE_F16LE, space, dcpl=dcpl)
                f.create_dataset("done", (n,), np.uint8, fillvalue=0)
                f.attrs["provenance"] = json.dumps(provenance, sort_keys=True)

            _create_then_rename(self.path, fill)
            self.file = h5py.File(self.path, "r+")
        remove_stale_temps(self.path)
        self._features = self.file["features"]
        self._load_done()

    def write(self, index: int, features: np.ndarray) -> None:
        """Store one (C, H, W) map; it counts as done after the next :meth:`flush`.

        The map goes straight to its chunk's place in the file (``write_direct_chunk``; the
        chunk is one uncompressed float16 image): a failed write (a full disk) raises here.
        Through HDF5's chunk cache it would be written later, from a destructor that only
        prints its error, and the image would be marked done with no data on disk."""
        fmap = np.ascontiguousarray(features, dtype="<f2")
        if fmap.shape != self._features.shape[1:]:
            raise ValueError(f"{self.path}: map of shape {fmap.shape}, expected "
                             f"{self._features.shape[1:]}")
        with disk_full_as_error(self.path, "writing features"):
            self._features.id.write_direct_chunk((index, 0, 0, 0), fmap.tobytes())
        self._new_done.append(index)

    def close(self) -> None:
        if self.file.id.valid:
            self.flush()
            self.file.close()


class FeatureFile:
    """Lazy reader of a features file, safe with DataLoader workers: the HDF5 handle is opened
    on first access in each process (never inherited across fork).

    ``get(i)`` -> (C, H, W) float32 array (``get(i, dtype=None)``: float16 as stored). Metadata
    (``filenames``, ``image_sizes``,
    ``provenance``, ``shape``, ``done``) is read once at construction.
    """

    def __init__(self, path: str | Path, require_complete: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheError(f"features file not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [k for k in ("features", "filenames", "image_sizes",
                                       "done") if k not in f]
                if missing:
                    raise CacheError(f"{self.path}: not a features file, "
                                     f"missing datasets {missing}")
                self.filenames = _filenames(f)
                self.image_sizes = f["image_sizes"][()]
                self.done = f["done"][()].astype(bool)
                self.shape = tuple(f["features"].shape[1:])
                self.provenance = _provenance(f)
        except OSError as err:
            raise CacheError(f"{self.path}: not a readable HDF5 file ({err})") from err
        if require_complete and not self.done.all():
            raise CacheError(
                f"{self.path}: {int((~self.done).sum())} of {len(self.done)} images have no "
                f"features yet (an interrupted extraction): rerun the extract stage to finish it"
            )
        self.index = {name: i for i, name in enumerate(self.filenames)}
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.filenames)

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def get(self, i: int, dtype: np.dtype | type | None = np.float32) -> np.ndarray:
        """Map of image ``i``, (C, H, W), as ``dtype`` (None: as stored, float16)."""
        fmap = self._handle()["features"][i]
        return fmap if dtype is None else fmap.astype(dtype)

    def __getstate__(self) -> dict[str, Any]:  # never pickle an open handle into a worker
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state
