"""The writer thread behind a bounded queue (hoi.engine.write_behind): every item written in
order of arrival, the queue bound holds, the thread's errors reach the caller, and only flushed
items count as done."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from hoi.engine.write_behind import DurableProgress, WriteBehind, to_host


class Store:
    """Records writes and flushes; ``durable`` holds the items a flush made durable."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.written: list[int] = []
        self.durable: list[int] = []
        self.threads: set[str] = set()
        self.fail_at = fail_at

    def write(self, item: int) -> None:
        self.threads.add(threading.current_thread().name)
        if item == self.fail_at:
            raise OSError(f"cannot write item {item}")
        time.sleep(0.001 * (item % 3))  # uneven write times
        self.written.append(item)

    def flush(self) -> None:
        self.durable = list(self.written)


def test_every_item_is_written_in_order_of_arrival_in_the_thread() -> None:
    store = Store()
    with WriteBehind(store.write, store.flush, maxsize=2, name="test-writer") as behind:
        for k in range(50):
            behind.put(k)
    assert store.written == list(range(50))
    assert store.durable == list(range(50))  # flushed at close
    assert store.threads == {"test-writer"} and behind.written == 50


def test_the_queue_bound_holds_back_the_producer() -> None:
    gate = threading.Event()
    taken: list[int] = []

    def slow_write(item: int) -> None:
        taken.append(item)
        gate.wait(10)

    behind = WriteBehind(slow_write, maxsize=3)
    handed = []

    def produce() -> None:
        for k in range(10):
            behind.put(k)
            handed.append(k)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.5)
    # one item in the writer's hands, three waiting: the fifth put blocks
    assert taken == [0] and behind.waiting() == 3 and len(handed) == 4
    gate.set()
    producer.join(10)
    behind.close()
    assert taken == list(range(10)) and handed == list(range(10))


def test_an_error_of_the_thread_is_raised_at_the_next_put() -> None:
    store = Store(fail_at=3)
    behind = WriteBehind(store.write, store.flush, maxsize=2)
    with pytest.raises(OSError, match="cannot write item 3"):
        for k in range(100):
            behind.put(k)
            time.sleep(0.005)
    behind.close(raise_error=False)
    assert store.written == [0, 1, 2]  # nothing after the failure
    assert store.durable == [0, 1, 2]  # what came before it is flushed


def test_an_error_of_the_thread_is_raised_at_close() -> None:
    store = Store(fail_at=4)
    behind = WriteBehind(store.write, store.flush, maxsize=8)
    for k in range(5):  # the failing item is the last one handed over
        behind.put(k)
    with pytest.raises(OSError, match="cannot write item 4"):
        behind.close()
    assert store.durable == [0, 1, 2, 3]


def test_an_error_of_the_caller_still_writes_what_it_handed_over() -> None:
    store = Store()
    with pytest.raises(KeyError), WriteBehind(store.write, store.flush, maxsize=4) as behind:
        for k in range(3):
            behind.put(k)
        raise KeyError("the loader failed")
    assert store.durable == [0, 1, 2]


def test_flush_while_the_queue_is_busy_at_most_every_n_items() -> None:
    flushed_at: list[int] = []
    gate = threading.Event()
    store = Store()

    def write(item: int) -> None:
        gate.wait(10)
        store.write(item)

    behind = WriteBehind(write, lambda: flushed_at.append(len(store.written)), maxsize=8,
                         flush_every=3)
    for k in range(8):
        behind.put(k)
    gate.set()
    behind.close()
    assert flushed_at[:2] == [3, 6] and flushed_at[-1] == 8


def test_durable_progress_counts_only_flushed_items(capsys) -> None:
    progress = DurableProgress(10, "[stage] rank 0", every=3600)
    progress.written(4)
    assert progress.count == 0 and capsys.readouterr().out == ""
    progress.flushed()
    progress.written(3)
    progress.flushed()
    progress.written(3)
    progress.flushed()
    # the first flush and the end; none in between within the hour
    assert capsys.readouterr().out.splitlines() == ["[stage] rank 0: done 4/10",
                                                     "[stage] rank 0: done 10/10"]


def test_to_host_on_the_cpu_is_the_tensors_themselves() -> None:
    x = torch.arange(12.0).view(3, 4)
    (host, flags), ready = to_host(x, x > 5)
    ready.wait()
    assert host.data_ptr() == x.data_ptr() and flags.tolist() == (x > 5).tolist()
    (host_t,), _ = to_host(x.t())
    assert host_t.is_contiguous() and torch.equal(host_t, x.t())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_host_on_cuda_is_pinned_and_complete_after_wait() -> None:
    x = torch.randn(64, 1024, 25, 25, device="cuda").half()
    (host,), ready = to_host(x)
    ready.wait()
    assert host.is_pinned() and torch.equal(host, x.cpu())
