"""Training targets for `tinygrad-lab train NAME`: each a module with add_arguments() and run().

`tinygrad-lab train NAME --distributed` (under `mpiexec -n N`) trains data-parallel; `ranks(args,
batch_size)` tells a recipe its rank and its share of the global batch.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

RECIPES: dict[str, str] = {
    "mnist-mlp": "mnist_mlp",
    "mnist-cnn": "mnist_cnn",
    "shakespeare-gpt": "shakespeare_gpt",
    "shakespeare-lstm": "shakespeare_lstm",
}


def get(name: str) -> ModuleType:
    if name not in RECIPES:
        raise KeyError(name)
    return importlib.import_module(f"tinygrad_lab.recipes.{RECIPES[name]}")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a `--distributed` run (rank 0 of a world of one without
    it). `--batch-size` is the global batch: each rank trains on `batch` = global / size of
    it, rows [rank * batch, (rank + 1) * batch) of a batch every rank draws alike."""

    rank: int = 0
    size: int = 1
    batch: int = 1  # this rank's share of the global batch
    distributed: bool = False

    @property
    def rows(self) -> slice:
        return slice(self.rank * self.batch, (self.rank + 1) * self.batch)

    def banner(self) -> str:
        """What the recipe's first line adds: the world size and the batch split."""
        if not self.distributed:
            return ""
        if self.size == 1:
            return ", world 1 (--distributed without mpiexec: one process)"
        return (f", world {self.size} (data-parallel: global batch {self.batch * self.size} = "
                f"{self.size} ranks x {self.batch})")

    def sampler(self, n: int, seed: int) -> Any:
        """Each epoch, this rank's indices of one permutation of n samples shared by the ranks
        (rank r takes every size-th from r, so the ranks' step-j batches of `batch` together
        are the one-process step-j batch); `set_epoch(epoch)` before iterating."""
        from tinygrad_lab import distributed as dist

        return dist.DistributedSampler(n, seed=seed, shuffle=True)

    def reseed(self, seed: int) -> None:
        """Give the global generator a stream of this rank's own, from (seed, rank), so that
        dropout masks differ between ranks as they differ between the rows of one batch (and
        do not replay the draws that built the weights)."""
        if self.distributed:
            import numpy as np

            from tinygrad_lab.random import manual_seed

            manual_seed(int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0]))


def ranks(args: argparse.Namespace, batch_size: int) -> Ranks:
    """This process's Ranks for a recipe's arguments (a world of one unless args.distributed);
    ValueError when the world size does not divide the global batch."""
    if not getattr(args, "distributed", False):
        return Ranks(batch=batch_size)
    from tinygrad_lab import distributed as dist

    world = dist.init()
    if batch_size % world.size:
        raise ValueError(f"--batch-size {batch_size} (the global batch) must be divisible by "
                         f"the {world.size} ranks")
    return Ranks(world.rank, world.size, batch_size // world.size, True)
