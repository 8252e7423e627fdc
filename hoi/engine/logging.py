"""Where metrics go: the console (Python logging), ``metrics.jsonl`` and TensorBoard.

Only the main process writes; the others get a writer that does nothing, so training code
calls it unconditionally.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOGGER_NAME = "hoi"


def setup_logging(output_dir: str | Path | None, is_main: bool,
                  name: str = "log.txt") -> logging.Logger:
    """The ``hoi`` logger: INFO to stderr (and to ``output_dir/name``) on the main process,
    warnings only on the others."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("[%(asctime)s %(levelname)s] %(message)s", datefmt="%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if is_main and output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(Path(output_dir) / name)
        file.setFormatter(fmt)
        logger.addHandler(file)
    return logger


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # tensors and numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value


class MetricsWriter:
    """Writes scalar metrics, keyed by a global step, to metrics.jsonl and TensorBoard.

    Args:
        output_dir: folder of ``metrics.jsonl`` and ``tensorboard/``.
        enabled: False on every process but the main one.
        purge_step: on resume, the step the run restarts from: records at or after it
            (written by the interrupted run after its last checkpoint) are dropped from both
            files, so each step appears once.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(
        self,
        output_dir: str | Path,
        enabled: bool = True,
        purge_step: int | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if purge_step is not None and self.path.is_file():
            kept = [
                line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", -1) < purge_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=purge_step)

    def write(self, step: int, metrics: Mapping[str, Any], **context: Any) -> None:
        """One record: ``{"step": step, **context, **metrics}``; numbers also go to TensorBoard.

        ``context`` (e.g. epoch=3) is stored in the JSON line only.
        """
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), **context}
        record.update({k: _plain(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                value = _plain(value)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
