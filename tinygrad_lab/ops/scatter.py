"""Scatter-add and index range checks: the two pieces of indexing maths every device needs.

`add_at(target, indices, values)` adds `values` into `target[indices]` in place, a repeated
index adding up (what np.add.at does; `target[indices] += values` would keep one of them). It is
the body of the named array function "scatter_add" (ops/movement.py), which GetItem's and Pad's
backward call, and the embedding and max-pool backward references call it directly, so each
device's way is written once: NumPy's `np.add.at`, CuPy's `cupyx.scatter_add` (CuPy before 13
has no `ufunc.at`), and any other array module's own `scatter_add` (the test stand-in's, which
like CuPy 12 has no `ufunc.at`).

`check_index_range(ids, size, what)` raises IndexError for an index outside 0..size-1. It reads
back one value, the result of one device-side reduction; host arrays are checked where they are,
before any copy. It stays on for every device: CuPy's take wraps an out-of-range index around
and answers silent garbage, which is worse than one small synchronisation per call.
"""

from __future__ import annotations

from typing import Any

import numpy as _numpy

from tinygrad_lab.backends import Array, array_module


def add_at(target: Array, indices: Any, values: Array) -> Array:
    """target[indices] += values in place, repeated indices adding up; returns target."""
    xp = array_module(target)
    if xp is _numpy:
        _numpy.add.at(target, indices, values)
    elif xp.__name__ == "cupy":
        import cupyx

        cupyx.scatter_add(target, indices, values)
    else:  # another device's array module brings its own
        xp.scatter_add(target, indices, values)
    return target


def check_index_range(ids: Array, size: int, what: str) -> None:
    """Integer `ids` in 0..size-1, else TypeError (not integers) or IndexError naming the first
    bad id. One reduction over the ids, one value read back; the bad id is looked up only when
    there is one."""
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{what}: ids must be integers, got {ids.dtype} (cast with "
                        ".astype('int64'))")
    if ids.size == 0:
        return
    xp = array_module(ids)
    bad = (ids < 0) | (ids >= size)  # one fused pass on a device
    if not bool(bad.any()):  # the one read back
        return
    first = int(ids.reshape(-1)[int(xp.argmax(bad.reshape(-1)))])
    raise IndexError(f"{what}: id {first} is out of range for a vocabulary of {size} "
                     f"(valid ids are 0..{size - 1})")


__all__ = ["add_at", "check_index_range"]
