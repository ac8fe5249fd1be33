"""Samplers for distributed evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch.distributed as dist
from torch.utils.data import Sampler


class UnpaddedDistributedSampler(Sampler[int]):
    """Split ``range(len(dataset))`` across ranks without padding or dropping.

    ``torch.utils.data.DistributedSampler`` pads the index list so that every rank
    gets the same number of samples, which counts some validation images twice.
    This sampler gives rank ``r`` the indices ``r, r + world, r + 2 * world, ...``:
    the union over ranks is exactly ``range(N)``, each index once, and per-rank
    counts differ by at most one. Meant for evaluation only (no shuffling).

    Args:
        data_source: the dataset (anything with ``len``) or its length.
        num_replicas: world size; default: from the initialised process group.
        rank: this process's rank; default: from the initialised process group.
    """

    def __init__(self, data_source: Sized | int, num_replicas: int | None = None, rank: int | None = None) -> None:
        if num_replicas is None or rank is None:
            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError("num_replicas and rank are required when torch.distributed is not initialised")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}], got {rank}")
        self.total_size = data_source if isinstance(data_source, int) else len(data_source)
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.total_size, self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        """No-op (the order is fixed); present so trainers may call it on any sampler."""
