"""Weight initialisers, NumPy-side (they run once), using the seeded generator."""

from __future__ import annotations

import numpy as np

from tinygrad_lab.random import generator


def glorot_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...],
                   dtype=np.float32) -> np.ndarray:
    """U(-a, a), a = sqrt(6 / (fan_in + fan_out)): Keras Dense's default (Glorot & Bengio 2010)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return generator().uniform(-limit, limit, size=shape).astype(dtype)


def he_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """U(-a, a), a = sqrt(6 / fan_in): keeps ReLU activations' variance (He et al. 2015)."""
    limit = np.sqrt(6.0 / fan_in)
    return generator().uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(fan_in: int, fan_out: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """N(0, 2 / fan_in) (He et al. 2015)."""
    return (generator().standard_normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def fan_in_uniform(fan_in: int, fan_out: int, shape: tuple[int, ...],
                   dtype=np.float32) -> np.ndarray:
    """U(-a, a), a = 1 / sqrt(fan_in): PyTorch's default for Linear and Conv weights and biases."""
    limit = np.sqrt(1.0 / fan_in)
    return generator().uniform(-limit, limit, size=shape).astype(dtype)


def normal(std: float, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    return (generator().standard_normal(size=shape) * std).astype(dtype)


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
