"""Writing behind the compute: a background thread that stores results while the device computes
the next batch, and the device-to-host copy that feeds it without stopping the device.

    with WriteBehind(write, flush, maxsize=4) as behind:
        for batch in loader:
            out = model(batch)
            host, ready = to_host(out)        # pinned, non-blocking on CUDA
            behind.put((indices, host, ready))  # blocks only while ``maxsize`` items wait

``write(item)`` runs in the thread for every item, in order of arrival; ``flush()`` after an item
when no other is waiting (or after ``flush_every`` items), and once at the end. The bounded queue
is the back-pressure: a slow disk slows the loop instead of filling the host memory. An exception
in the thread stops the writing (later items are dropped, what was written is flushed) and is
raised again in the caller's thread at its next :meth:`WriteBehind.put` or at
:meth:`WriteBehind.close`: nothing is lost silently.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

_STOP = object()


class Ready:
    """Waits until the non-blocking device-to-host copies of :func:`to_host` are complete."""

    def __init__(self, event: torch.cuda.Event | None = None) -> None:
        self.event = event

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()


def to_host(*tensors: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Ready]:
    """Copies of ``tensors`` in host memory, and what to wait on before reading them.

    On CUDA the copies go into pinned memory without blocking the host (the device keeps its
    queue of work); read them only after ``ready.wait()``, e.g. in the writer thread. On the CPU
    the tensors are returned as they are (contiguous) and ``wait`` does nothing."""
    if not tensors or tensors[0].device.type != "cuda":
        return tuple(t.contiguous() for t in tensors), Ready()
    hosts = []
    for t in tensors:
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t.contiguous(), non_blocking=True)
        hosts.append(host)
    event = torch.cuda.Event()
    event.record()
    return tuple(hosts), Ready(event)


class WriteBehind:
    """A thread that runs ``write(item)`` for the items :meth:`put` hands it (see the module
    docstring).

    Args:
        write: stores one item (called in the thread, items in order of arrival).
        flush: makes what was written durable (called in the thread; optional).
        maxsize: items that may wait in the queue; :meth:`put` blocks while it is full.
        flush_every: flush after at most this many items even while others wait.
    """

    def __init__(self, write: Callable[[Any], None], flush: Callable[[], None] | None = None,
                 maxsize: int = 4, flush_every: int | None = None,
                 name: str = "write-behind") -> None:
        if maxsize < 1:
            raise ValueError(f"the write queue holds at least 1 item, got {maxsize}")
        self._write, self._flush = write, flush
        self._flush_every = flush_every or maxsize
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._error: BaseException | None = None
        self._closed = False
        self.written = 0  # items written so far (read by the caller for progress)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def maxsize(self) -> int:
        return self._queue.maxsize

    def waiting(self) -> int:
        """Items in the queue, not yet taken by the thread."""
        return self._queue.qsize()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        unflushed = 0
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if self._error is not None:
                continue  # dropped: the caller raises the error at its next put or close
            try:
                self._write(item)
                self.written += 1
                unflushed += 1
                if unflushed >= self._flush_every or self._queue.empty():
                    unflushed = 0
                    self._do_flush()
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                self._error = err
                self._flush_after_error()
        if self._error is None and unflushed:
            try:
                self._do_flush()
            except BaseException as err:  # noqa: BLE001
                self._error = err

    def _do_flush(self) -> None:
        if self._flush is not None:
            self._flush()

    def _flush_after_error(self) -> None:
        """Keep what was written before the error (its second error, if any, is not the news)."""
        try:
            self._do_flush()
        except BaseException:  # noqa: BLE001, S110
            pass

    # ------------------------------------------------------------------ the caller's side
    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: Any) -> None:
        """Hand ``item`` to the thread; blocks while the queue is full. Raises the thread's
        error, if it had one."""
        if self._closed:
            raise RuntimeError("put on a closed WriteBehind")
        self._raise_if_failed()
        while True:
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                self._raise_if_failed()
                if not self._thread.is_alive():
                    raise RuntimeError("the writer thread has stopped") from None

    def close(self, raise_error: bool = True) -> None:
        """Write what is queued, flush, stop the thread; raise its error (if ``raise_error``)."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)  # the thread drains the queue, so this never blocks for long
            self._thread.join()
        if raise_error:
            self._raise_if_failed()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # on an error of the caller, the items already handed over are still written and
        # flushed; that error is the one reported (the thread's, if any, is the same or later)
        self.close(raise_error=exc is None)


class DurableProgress:
    """Progress of a stage that writes behind its compute, counted in items made durable (only
    a flushed image counts): a tqdm ``bar`` (optional) and a line ``<tag>: done N/TOTAL`` at the
    first flush (the run works), then every ``every`` seconds (0: at every flush), and when the
    total is reached.

    :meth:`written` and :meth:`flushed` are called from the writer thread."""

    def __init__(self, total: int, tag: str, every: float = 60.0, bar: Any = None) -> None:
        self.total, self.tag, self.every, self.bar = total, tag, every, bar
        self.count = 0  # durable
        self._pending = 0  # written, not flushed yet
        self._last = time.monotonic()

    def written(self, n: int) -> None:
        self._pending += n

    def flushed(self) -> None:
        if not self._pending:
            return
        self.count += self._pending
        if self.bar is not None:
            self.bar.update(self._pending)
        first = self.count == self._pending
        self._pending = 0
        now = time.monotonic()
        if (first or self.every <= 0 or now - self._last >= self.every
                or self.count >= self.total):
            self._last = now
            print(f"{self.tag}: done {self.count}/{self.total}", flush=True)
