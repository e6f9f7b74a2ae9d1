"""DistributedSampler: which samples of a data set of n this rank trains on, epoch by epoch.

Every rank draws the same permutation of range(n) (seeded by `seed` and the epoch, so
`set_epoch(e)` reshuffles identically everywhere) and takes every world_size-th index from its
rank on: shards are disjoint and together cover the epoch. When n is not a multiple of the world
size, every rank still gets the same number of indices, so every rank runs the same number of
steps (a rank with one step more would wait forever in its extra all-reduce):

- drop_last=False (default): the permutation is padded by repeating its first indices, up to a
  multiple of the world size (each rank gets ceil(n / R); at most R - 1 samples appear twice);
- drop_last=True: its last n % R indices are dropped (each rank gets n // R).

With per-rank batches of b taken in order, step j on all ranks together sees exactly
`global_order()[j*R*b:(j+1)*R*b]`: one process with batch R*b over that order takes the same
steps (tests/test_distributed.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tinygrad_lab.distributed.world import World, init


class DistributedSampler:
    """This rank's indices into a data set of `n` samples (see the module docstring)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 *, world: World | None = None) -> None:
        if n < 0:
            raise ValueError(f"DistributedSampler: n must be >= 0, got {n}")
        self.world = world or init()
        self.n, self.seed, self.shuffle, self.drop_last = int(n), int(seed), shuffle, drop_last
        self.epoch = 0
        size = self.world.size
        self.num_samples = self.n // size if drop_last else -(-self.n // size)
        self.total_size = self.num_samples * size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (the same permutation on every rank)."""
        self.epoch = int(epoch)

    def global_order(self) -> np.ndarray:
        """The epoch's order over all ranks, padded or cut to total_size; rank r takes
        [r::world_size]."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size <= self.n:
            return order[:self.total_size]
        return np.resize(order, self.total_size)  # repeats from the start

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch."""
        return self.global_order()[self.world.rank::self.world.size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


__all__ = ["DistributedSampler"]
