"""Results in the layouts of the official HICO-DET toolkit (ywchao/ho-rcnn ``eval_one.m``).

Two layouts, both of MATLAB cell arrays whose cell ``{r, j}`` is a K x 9 double matrix of rows
``[xh1 yh1 xh2 yh2 xo1 yo1 xo2 yo2 score]`` for image ``j``, boxes 0-based (the official code
adds 1):

- ``all``: one file ``detections.mat`` with ``all_boxes``, 600 x N-images, row r = HOI class r.
- ``per_object``: 80 files ``detections_XX.mat``, XX = 01..80 the COCO class order (01 person,
  02 bicycle, ...); ``all_boxes`` is (HOIs of that object) x N, row r = the object's r-th HOI.

Reading uses scipy.io. Writing uses the small MAT v5 writer below instead of
``scipy.io.savemat``, which needs minutes for the 5.8 million mostly empty cells of HICO-DET.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io

from hoi.data.boxes import to_one_based, to_zero_based
from hoi.data.metadata import HicoMetadata, hico_metadata
from hoi.evaluation.hoi_results import HOIResults, ResultsError

LAYOUTS = ("per_object", "all")
ALL_FILE = "detections.mat"
OBJECT_FILE = "detections_{:02d}.mat"
VARIABLE = "all_boxes"
ROW_WIDTH = 9  # 8 box coordinates + score
COMPRESSION_LEVEL = 1  # the cells are highly repetitive: fast and still small
COLUMNS_PER_CHUNK = 256

# MAT v5 element types and array classes
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_DOUBLE, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 9, 14, 15
_MX_CELL, _MX_DOUBLE = 1, 6


# ---------------------------------------------------------------- MAT v5 writing

def _pad8(n: int) -> int:
    return (8 - n % 8) % 8


def _element(mi_type: int, payload: bytes) -> bytes:
    return struct.pack("<II", mi_type, len(payload)) + payload + b"\0" * _pad8(len(payload))


def _matrix_header(mx_class: int, shape: tuple[int, int], name: str, content_bytes: int) -> bytes:
    """Tag and sub-elements (flags, dims, name) of a miMATRIX element whose data part is
    ``content_bytes`` long."""
    head = (_element(_MI_UINT32, struct.pack("<II", mx_class, 0))
            + _element(_MI_INT32, struct.pack("<ii", *shape))
            + _element(_MI_INT8, name.encode("ascii")))
    return struct.pack("<II", _MI_MATRIX, len(head) + content_bytes) + head


def _double_matrix(values: np.ndarray) -> bytes:
    """A nameless 2-D double matrix element (a cell's content); column-major data."""
    values = np.asarray(values, dtype="<f8")
    data = _element(_MI_DOUBLE, values.T.tobytes())
    return _matrix_header(_MX_DOUBLE, values.shape, "", len(data)) + data


_EMPTY_CELL = _double_matrix(np.zeros((0, 0)))


def _mat_header() -> bytes:
    text = b"MATLAB 5.0 MAT-file, written by hoi.evaluation.matlab"
    return text.ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"


def write_cell_mat(path: str | Path, name: str, shape: tuple[int, int],
                   cells: dict[tuple[int, int], np.ndarray]) -> None:
    """Write one MAT v5 file holding a cell array ``name`` of ``shape``; ``cells`` maps (row, col)
    to a 2-D double matrix, every other cell is empty ``[]``. Compressed, streamed by columns."""
    rows, cols = shape
    encoded = {key: _double_matrix(v) for key, v in cells.items()}
    content = sum(len(b) for b in encoded.values()) + (rows * cols
                                                       - len(encoded)) * len(_EMPTY_CELL)
    by_col: dict[int, dict[int, bytes]] = {}
    for (r, c), blob in encoded.items():
        by_col.setdefault(c, {})[r] = blob

    def chunks() -> Iterator[bytes]:
        yield _matrix_header(_MX_CELL, shape, name, content)
        empty_col = _EMPTY_CELL * rows
        for start in range(0, cols, COLUMNS_PER_CHUNK):
            parts = []
            for c in range(start, min(cols, start + COLUMNS_PER_CHUNK)):
                col = by_col.get(c)
                parts.append(empty_col if col is None else
                             b"".join(col.get(r, _EMPTY_CELL) for r in range(rows)))
            yield b"".join(parts)

    comp = zlib.compressobj(COMPRESSION_LEVEL)
    body = b"".join(comp.compress(chunk) for chunk in chunks()) + comp.flush()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(_mat_header())
        f.write(struct.pack("<II", _MI_COMPRESSED, len(body)))
        f.write(body)
    tmp.replace(path)


# ---------------------------------------------------------------- export

def _cells_by_class(det: HOIResults) -> dict[int, dict[int, np.ndarray]]:
    """hoi -> image -> (K, 9) rows in the detection set's order, boxes 0-based."""
    order = np.lexsort((det.image_index, det.hoi))  # stable: row order kept within an image
    hoi, img = det.hoi[order], det.image_index[order]
    rows = np.concatenate([to_zero_based(det.boxes_h[order]), to_zero_based(det.boxes_o[order]),
                           det.score[order, None]], axis=1)
    key_change = np.flatnonzero((np.diff(hoi) != 0) | (np.diff(img) != 0)) + 1
    starts = np.concatenate([[0], key_change]) if len(order) else np.zeros(0, dtype=np.int64)
    ends = np.concatenate([key_change, [len(order)]]) if len(order) else starts
    out: dict[int, dict[int, np.ndarray]] = {}
    for s, e in zip(starts, ends):
        out.setdefault(int(hoi[s]), {})[int(img[s])] = rows[s:e]
    return out


def export_matlab(det: HOIResults, num_images: int, out_dir: str | Path, layout: str = "per_object",
                  meta: HicoMetadata | None = None) -> list[Path]:
    """Write ``det`` (image_index into the annotation's ``num_images`` images) in an official
    layout under ``out_dir``; returns the files written."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown MATLAB layout {layout!r}; expected one of {LAYOUTS}")
    meta = meta or hico_metadata()
    det.check(num_images, meta.hoi_object, "detections to export")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_class = _cells_by_class(det)
    if layout == "all":
        cells = {(h, j): v for h, per_img in by_class.items() for j, v in per_img.items()}
        path = out_dir / ALL_FILE
        write_cell_mat(path, VARIABLE, (len(meta.hoi_names), num_images), cells)
        return [path]
    written = []
    coco = meta.hico_to_coco80()
    for obj in range(len(meta.objects)):
        first, stop = meta.object_hoi_range(obj)
        cells = {(h - first,
                  j): v for h in range(first, stop) for j, v in by_class.get(h, {}).items()}
        path = out_dir / OBJECT_FILE.format(int(coco[obj]))
        write_cell_mat(path, VARIABLE, (stop - first, num_images), cells)
        written.append(path)
    return sorted(written)


# ---------------------------------------------------------------- reading

def _load_cells(path: Path, rows: int, num_images: int | None) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"MATLAB results file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=[VARIABLE])
    except NotImplementedError as err:
        raise ResultsError(f"{path}: MATLAB v7.3 files are not supported; re-save with "
                             f"save(..., '-v7') ({err})") from err
    except Exception as err:  # scipy raises many types for truncated/corrupt files
        raise ResultsError(f"{path}: not a readable MATLAB file ({type(err).__name__}: {err}); "
                             f"expected a .mat holding '{VARIABLE}'") from err
    if VARIABLE not in mat:
        raise ResultsError(f"{path}: no variable '{VARIABLE}'")
    cells = mat[VARIABLE]
    if cells.dtype != object or cells.ndim != 2 or cells.shape[0] != rows \
            or (num_images is not None and cells.shape[1] != num_images):
        want = f"({rows}, {num_images if num_images is not None else 'N'})"
        raise ResultsError(f"{path}: '{VARIABLE}' is a {cells.dtype} array of shape {cells.shape}; "
                             f"expected a cell array of shape {want}")
    return cells


def _rows_of(cells: np.ndarray, hoi_offset: int,
             path: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    sizes = np.frompyfunc(lambda x: x.size, 1, 1)(cells).astype(np.int64)
    blocks, hois, images = [], [], []
    for r, j in zip(*np.nonzero(sizes)):  # class-major, then images, as eval_one.m reads
        block = np.asarray(cells[r, j], dtype=np.float64)
        if block.ndim != 2 or block.shape[1] < ROW_WIDTH:
            raise ResultsError(f"{path}: {VARIABLE}{{{r + 1}, {j + 1}}} has shape {block.shape}; "
                                 f"expected K x {ROW_WIDTH} rows [human box, object box, score]")
        blocks.append(block[:, :ROW_WIDTH])
        hois.append(np.full(len(block), hoi_offset + r, dtype=np.int64))
        images.append(np.full(len(block), j, dtype=np.int64))
    return blocks, hois, images


def read_matlab(path: str | Path, num_images: int | None = None,
                meta: HicoMetadata | None = None) -> HOIResults:
    """Read official-layout results: a ``detections.mat`` file or a directory of the 80
    ``detections_XX.mat`` files. Boxes become 1-based (``+ 1``, as the official code does)."""
    meta = meta or hico_metadata()
    path = Path(path)
    blocks, hois, images = [], [], []
    if path.is_dir():
        coco = meta.hico_to_coco80()
        files = {obj: path / OBJECT_FILE.format(int(coco[obj])) for obj in range(len(meta.objects))}
        missing = [f.name for f in files.values() if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: missing {len(missing)} per-object results files, "
                                    f"e.g. {missing[:3]}")
        parts = []
        for obj, f in files.items():
            first, stop = meta.object_hoi_range(obj)
            cells = _load_cells(f, stop - first, num_images)
            num_images = cells.shape[1]
            parts.append((first, _rows_of(cells, first, f)))
        for _, (b, h, i) in sorted(parts, key=lambda p: p[0]):
            blocks += b
            hois += h
            images += i
    else:
        cells = _load_cells(path, len(meta.hoi_names), num_images)
        blocks, hois, images = _rows_of(cells, 0, path)
    if not blocks:
        return HOIResults.empty()
    rows = np.concatenate(blocks)
    hoi = np.concatenate(hois)
    return HOIResults(np.concatenate(images), to_one_based(rows[:, 0:4]),
                      to_one_based(rows[:, 4:8]),
                         meta.hoi_object[hoi], hoi, rows[:, 8], meta={"source": str(path)})
