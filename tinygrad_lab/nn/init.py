"""Weight initialisers, NumPy-side (they run once), using the seeded generator."""

from __future__ import annotations

import numpy as np

from tinygrad_lab.random import generator

_CHUNK = 1 << 18
"""Elements drawn per float64 block (2 MiB): the generator draws float64, and casting block by
block keeps the values bit-identical to one big draw while the peak stays the target array plus
one block (one float64 draw of Linear(5000, 40000) peaked at 2.9x the float32 weight)."""


def _fill(shape: tuple[int, ...], dtype, draw) -> np.ndarray:  # noqa: ANN001
    """An array of `shape` and `dtype` filled from `draw(n)` (n float64 values, in order)."""
    out = np.empty(shape, dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        stop = min(start + _CHUNK, flat.size)
        flat[start:stop] = draw(stop - start)
    return out


def _uniform(limit: float, shape: tuple[int, ...], dtype) -> np.ndarray:  # noqa: ANN001
    gen = generator()
    return _fill(shape, dtype, lambda n: gen.uniform(-limit, limit, size=n))


def _normal(std: float, shape: tuple[int, ...], dtype) -> np.ndarray:  # noqa: ANN001
    gen = generator()
    return _fill(shape, dtype, lambda n: gen.standard_normal(size=n) * std)


def glorot_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...],
                   dtype=np.float32) -> np.ndarray:
    """U(-a, a), a = sqrt(6 / (fan_in + fan_out)): Keras Dense's default (Glorot & Bengio 2010)."""
    return _uniform(np.sqrt(6.0 / (fan_in + fan_out)), shape, dtype)


def he_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """U(-a, a), a = sqrt(6 / fan_in): keeps ReLU activations' variance (He et al. 2015)."""
    return _uniform(np.sqrt(6.0 / fan_in), shape, dtype)


def he_normal(fan_in: int, fan_out: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """N(0, 2 / fan_in) (He et al. 2015)."""
    return _normal(np.sqrt(2.0 / fan_in), shape, dtype)


def fan_in_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...],
                   dtype=np.float32) -> np.ndarray:
    """U(-a, a), a = 1 / sqrt(fan_in): PyTorch's default for Linear and Conv weights and biases."""
    return _uniform(np.sqrt(1.0 / fan_in), shape, dtype)


def normal(std: float, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    return _normal(std, shape, dtype)


INITIALISERS = {
    "glorot_uniform": glorot_uniform,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "fan_in_uniform": fan_in_uniform,
}


def get(name: str):
    if name not in INITIALISERS:
        raise ValueError(f"unknown initialiser {name!r}; choose from {sorted(INITIALISERS)}")
    return INITIALISERS[name]
