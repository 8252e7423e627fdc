"""torch.distributed through ``torchrun``: process-group set-up from its environment variables,
rank helpers, gathers of variable-size tensors and an evaluation sampler that does not pad.

A process started without torchrun (no ``WORLD_SIZE`` in the environment) is a world of one:
every helper here then works without a process group.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, its local rank on the machine, and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@dataclass
class DDPConfig:
    """Options of DistributedDataParallel for runs on several processes."""

    # gradients are views into DDP's all-reduce buckets: no copy, less memory
    gradient_as_bucket_view: bool = True
    # the graph is the same every step (true of these models): DDP may skip its search for
    # unused parameters and overlap more; off by default as a new option
    static_graph: bool = False


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this process's GPU if there is one, else the CPU; ``cuda`` demands a GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda was asked for but PyTorch sees no GPU (use device=cpu "
                               "or auto)")
        return torch.device("cuda", local_rank)
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be auto, cuda or cpu, got {device!r}")


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group that torchrun describes (RANK, LOCAL_RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT), with NCCL on GPUs and Gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def cleanup() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(device: str = "auto", timeout_s: float = 1800.0) -> Iterator[DistInfo]:
    """:func:`init_distributed` around a command's work, leaving the process group after it."""
    info = init_distributed(device, timeout_s)
    try:
        yield info
    finally:
        cleanup()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all processes (a new tensor; the input is left alone)."""
    out = tensor.clone()
    if is_dist():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_variable(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 the tensors of all processes, in rank order.

    Each process may hold a different number of rows: (n_r, *rest) on rank r gives
    (sum_r n_r, *rest) on every rank. ``rest`` and the dtype must agree across processes.
    """
    if not is_dist():
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    counts = [torch.zeros_like(count) for _ in range(get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    longest = max(sizes)
    # all_gather needs equal shapes: pad to the longest, gather, then cut the padding away
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)], dim=0)


def all_gather_objects(obj: Any) -> list[Any]:
    """One picklable object from every process, in rank order."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


class ShardedSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of a dataset, in order, without padding.

    Unlike DistributedSampler it never repeats samples to even out the shards, so the
    gathered evaluation covers every sample exactly once; the shards differ by at most one.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))
