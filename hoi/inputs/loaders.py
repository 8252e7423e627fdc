"""The samplers and loaders of training and inference over an
:class:`~hoi.inputs.dataset.HOIDataset`."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from hoi.config import ConfigError
from hoi.engine.distributed import ShardedSampler
from hoi.inputs.dataset import HOIDataset, collate


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of a seeded per-epoch shuffle, cut into ``world_size`` equal parts: rank r gets
    part r of every global batch, so k processes see the same global batches as one.

    Args:
        length: dataset size; batch_size: the global batch (divisible by world_size).
        drop_last: drop the last incomplete global batch (always when distributed).
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, max_batches: int | None = None) -> None:
        if batch_size % world_size:
            raise ConfigError(f"optim.batch_size {batch_size} is not divisible by the {world_size} "
                              "processes")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last or world_size > 1
        self.epoch = 0
        self.max_batches = max_batches  # an epoch ends after this many batches (None: all)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full = self.length // self.batch_size
        n = full if self.drop_last or self.length % self.batch_size == 0 else full + 1
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=g).tolist()
        local = self.batch_size // self.world_size
        for b in range(len(self)):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.world_size == 1:
                yield batch
            else:
                yield batch[self.rank * local:(self.rank + 1) * local]


def train_loader(dataset: HOIDataset, batch_size: int, seed: int, workers: int, rank: int,
                 world_size: int,
                 pin: bool, max_batches: int | None = None) -> DataLoader:
    """Shuffled global batches of ``batch_size`` images (this process's part of each)."""
    sampler = GlobalBatchSampler(len(dataset), batch_size, seed, rank, world_size,
                                 max_batches=max_batches)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      pin_memory=pin, persistent_workers=False)


def inference_loader(dataset: HOIDataset, batch_size: int, workers: int, rank: int, world_size: int,
                     pin: bool) -> DataLoader:
    """This process's shard of ``dataset`` in order, no padding (see ShardedSampler)."""
    return DataLoader(dataset, batch_size=batch_size,
                      sampler=ShardedSampler(len(dataset), rank, world_size),
                      collate_fn=collate, num_workers=workers, pin_memory=pin)
