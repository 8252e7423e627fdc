"""HOI detection results (docs/architecture.md#results-files): one row per scored (human box,
object box, HOI) triple.

Stored as ``.npz`` or ``.h5`` with the arrays ``image_index``, ``boxes_h``, ``boxes_o``,
``object``, ``hoi``, ``score`` and optionally ``filenames`` (the images ``image_index`` points
into; without it, the order of the annotation file). Boxes are in the annotation convention
(1-based inclusive pixels).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hoi.data.boxes import well_ordered
from hoi.engine.disk import disk_full_as_error
from hoi.errors import UserError

FIELDS = ("image_index", "boxes_h", "boxes_o", "object", "hoi", "score")
SUFFIXES = (".npz", ".h5", ".hdf5")
MAX_LISTED_ROWS = 5  # rows quoted in an error message


class ResultsError(UserError, ValueError):
    """A detection set that cannot be evaluated; the message names the rows and what was
    expected."""


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:MAX_LISTED_ROWS])
    return f"row{'s' if len(idx) > 1 else ''} {shown}" + (f" (and {len(idx) - MAX_LISTED_ROWS} "
                                                          "more)"
                                                         if len(idx) > MAX_LISTED_ROWS else "")


@dataclass
class HOIResults:
    """Parallel arrays, one row per detection.

    Attributes:
        image_index: (M,) int64, index into ``filenames`` (or the annotation file's images).
        boxes_h, boxes_o: (M, 4) float64, [x1, y1, x2, y2], 1-based inclusive.
        object: (M,) int64, HICO object index 0..79.
        hoi: (M,) int64, HOI class 0..599.
        score: (M,) float64.
        filenames: optional list of image file names.
        meta: free-form provenance (config, checkpoint, code version), saved as JSON.
    """

    image_index: np.ndarray
    boxes_h: np.ndarray
    boxes_o: np.ndarray
    object: np.ndarray
    hoi: np.ndarray
    score: np.ndarray
    filenames: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_index = np.asarray(self.image_index).reshape(-1)
        self.object = np.asarray(self.object).reshape(-1)
        self.hoi = np.asarray(self.hoi).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        self.boxes_h = np.asarray(self.boxes_h, dtype=np.float64)
        self.boxes_o = np.asarray(self.boxes_o, dtype=np.float64)
        m = len(self.score)
        for name in ("image_index", "object", "hoi"):
            arr = getattr(self, name)
            if len(arr) != m:
                raise ResultsError(f"'{name}' has {len(arr)} rows, 'score' has {m}")
            if arr.dtype.kind == "f":
                bad = ~np.isfinite(arr) | (arr != np.round(arr))
                if bad.any():
                    raise ResultsError(f"'{name}' {_rows(bad)}: expected integers, got "
                                       f"{arr[bad][:MAX_LISTED_ROWS]}")
            elif arr.dtype.kind not in "iub":
                raise ResultsError(f"'{name}': expected integers, got dtype {arr.dtype}")
            setattr(self, name, arr.astype(np.int64))
        for name in ("boxes_h", "boxes_o"):
            arr = getattr(self, name)
            if m == 0 and arr.size == 0:
                setattr(self, name, arr.reshape(0, 4))
            elif arr.shape != (m, 4):
                raise ResultsError(f"'{name}' has shape {arr.shape}, expected ({m}, 4)")
        if self.filenames is not None:
            self.filenames = [str(f) for f in self.filenames]

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def empty(cls, filenames: Sequence[str] | None = None) -> HOIResults:
        """A detection set with no rows."""
        z = np.zeros(0, dtype=np.int64)
        return cls(z, np.zeros((0, 4)), np.zeros((0, 4)), z, z, np.zeros(0),
                   None if filenames is None else list(filenames))

    def select(self, rows: np.ndarray) -> HOIResults:
        """The rows ``rows`` (index or bool mask), keeping filenames and meta."""
        return HOIResults(self.image_index[rows], self.boxes_h[rows], self.boxes_o[rows],
                             self.object[rows], self.hoi[rows], self.score[rows], self.filenames,
                             dict(self.meta))

    # ------------------------------------------------------------ checks
    def check(self, num_images: int, hoi_object: np.ndarray, source: str = "detections") -> None:
        """Raise :class:`ResultsError` for rows that cannot be evaluated.

        ``num_images`` is the number of annotated images; ``hoi_object`` (600,) the object of
        each HOI class. Checks: finite scores, finite well-ordered boxes, image and HOI
        indices in range, object equal to the HOI's object.
        """
        num_hois = len(hoi_object)
        bad = ~np.isfinite(self.score)
        if bad.any():
            raise ResultsError(f"{source}: {_rows(bad)}: score "
                               f"{self.score[bad][:MAX_LISTED_ROWS]}; expected finite numbers")
        for name in ("boxes_h", "boxes_o"):
            bad = ~well_ordered(getattr(self, name))
            if bad.any():
                raise ResultsError(f"{source}: {_rows(bad)}: {name} "
                                   f"{getattr(self, name)[bad][0].tolist()}; "
                                     "expected finite [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        limit = len(self.filenames) if self.filenames is not None else num_images
        bad = (self.image_index < 0) | (self.image_index >= limit)
        if bad.any():
            raise ResultsError(f"{source}: {_rows(bad)}: image_index "
                               f"{self.image_index[bad][:MAX_LISTED_ROWS]}; "
                                 f"expected 0..{limit - 1}")
        bad = (self.hoi < 0) | (self.hoi >= num_hois)
        if bad.any():
            raise ResultsError(f"{source}: {_rows(bad)}: hoi {self.hoi[bad][:MAX_LISTED_ROWS]}; "
                                 f"expected 0..{num_hois - 1}")
        bad = self.object != np.asarray(hoi_object)[self.hoi]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ResultsError(f"{source}: {_rows(bad)}: object {self.object[i]} does not match "
                               f"HOI {self.hoi[i]}, whose object is {hoi_object[self.hoi[i]]}")

    def count_outside(self, sizes: Sequence[Sequence[int]]) -> int:
        """Rows whose human or object box reaches past its image (``sizes`` [w, h] per image of
        ``image_index``). The official code scores them as they are; results made elsewhere have
        them."""
        if not len(self):
            return 0
        wh = np.asarray(sizes, dtype=np.float64)[self.image_index]
        out = np.zeros(len(self), dtype=bool)
        for boxes in (self.boxes_h, self.boxes_o):
            out |= ~((boxes[:, 0] >= 1) & (boxes[:, 1] >= 1) & (boxes[:, 2] <= wh[:, 0])
                     & (boxes[:, 3] <= wh[:, 1]))
        return int(out.sum())

    def to_annotation_order(self, filenames: Sequence[str],
                            source: str = "detections") -> HOIResults:
        """Re-index ``image_index`` into ``filenames`` (the annotation file's order) using
        this set's own ``filenames``; unchanged when it has none."""
        if self.filenames is None or list(self.filenames) == list(filenames):
            return self
        position = {name: i for i, name in enumerate(filenames)}
        missing = [n for n in self.filenames if n not in position]
        if missing:
            raise ResultsError(f"{source}: {len(missing)} file names are not in the annotation "
                               f"file, e.g. {missing[:MAX_LISTED_ROWS]}")
        bad = (self.image_index < 0) | (self.image_index >= len(self.filenames))
        if bad.any():
            raise ResultsError(f"{source}: {_rows(bad)}: image_index "
                               f"{self.image_index[bad][:MAX_LISTED_ROWS]}; "
                                 f"expected 0..{len(self.filenames) - 1}")
        lookup = np.array([position[n] for n in self.filenames], dtype=np.int64)
        out = self.select(slice(None))
        out.image_index = lookup[self.image_index] if len(self) else self.image_index
        out.filenames = list(filenames)
        return out

    # ------------------------------------------------------------ I/O
    @classmethod
    def load(cls, path: str | Path) -> HOIResults:
        """Read a ``.npz`` or ``.h5`` results file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"detections file not found: {path}")
        if path.suffix not in SUFFIXES:
            raise ResultsError(f"{path}: unknown results format; expected one of {SUFFIXES} "
                                 "(or a MATLAB layout, see hoi.evaluation.matlab)")
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            else:
                import h5py

                with h5py.File(path, "r") as f:
                    data = {k: f[k][()] for k in f.keys()}
                    if "meta_json" in f.attrs:
                        data["meta_json"] = f.attrs["meta_json"]
        # truncated zip, bad HDF5 header, ... (numpy and h5py raise many types)
        except Exception as err:
            raise ResultsError(f"{path}: not a readable {path.suffix} results file "
                               f"({type(err).__name__}: "
                                 f"{err}); expected the arrays {list(FIELDS)}") from err
        missing = [k for k in FIELDS if k not in data]
        if missing:
            raise ResultsError(f"{path}: missing arrays {missing}; expected {list(FIELDS)} (+ "
                               "filenames)")
        filenames = None
        if "filenames" in data:
            filenames = [f.decode() if isinstance(f, bytes) else str(f)
                         for f in np.asarray(data["filenames"]).ravel()]
        meta = {}
        if "meta_json" in data:
            raw = data["meta_json"]
            raw = raw.item() if isinstance(raw, np.ndarray) else raw
            meta = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        try:
            return cls(*(data[k] for k in FIELDS), filenames=filenames, meta=meta)
        except ResultsError as err:
            raise ResultsError(f"{path}: {err}") from err

    def save(self, path: str | Path) -> None:
        """Write a ``.npz`` or ``.h5`` results file (atomically: temp file, then rename)."""
        path = Path(path)
        if path.suffix not in SUFFIXES:
            raise ResultsError(f"{path}: expected a file name ending in one of {SUFFIXES}")
        arrays: dict[str, np.ndarray] = {k: getattr(self, k) for k in FIELDS}
        meta_json = json.dumps(self.meta)
        tmp = path.with_name(path.name + ".tmp" + path.suffix)
        try:
            with disk_full_as_error(path, "writing the results"):
                self._write(tmp, arrays, meta_json)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)

    def _write(self, tmp: Path, arrays: dict[str, np.ndarray], meta_json: str) -> None:
        if tmp.suffix == ".npz":
            if self.filenames is not None:
                arrays["filenames"] = np.asarray(self.filenames, dtype=str)
            np.savez(tmp, meta_json=np.asarray(meta_json), **arrays)
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                for k, v in arrays.items():
                    f.create_dataset(k, data=v)
                if self.filenames is not None:
                    f.create_dataset("filenames", data=self.filenames, dtype=h5py.string_dtype())
                f.attrs["meta_json"] = meta_json
