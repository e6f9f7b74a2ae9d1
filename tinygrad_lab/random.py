"""One seeded random generator for initialisers, dropout and data shuffling."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()
_seed: int | None = None  # the last manual_seed, None before any
_epoch = 0  # how many times manual_seed ran: device generators reseed when it changes


def manual_seed(seed: int) -> None:
    """Make initialisation, dropout masks and shuffling repeatable, on every device: the host
    generator restarts from `seed`, and each device's own generator (a GPU draws its dropout
    masks where they are used) restarts from a seed derived from `seed` and the device."""
    global _generator, _seed, _epoch
    _generator = np.random.default_rng(seed)
    _seed, _epoch = int(seed), _epoch + 1


def seed_epoch() -> int:
    """Changes whenever manual_seed runs (a device generator made before is stale then)."""
    return _epoch


def device_seed(device: str) -> int | None:
    """The seed of `device`'s own generator: derived from the last manual_seed and the device
    name (so cuda:0 and cuda:1 draw differently), or None (fresh entropy) before any."""
    if _seed is None:
        return None
    words = [_seed, *device.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])


def generator() -> np.random.Generator:
    return _generator
