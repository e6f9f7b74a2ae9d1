"""Keras' datasets: `keras.datasets.mnist.load_data()` returns the MNIST copy shipped with the
package, as Keras' ((x_train, y_train), (x_test, y_test)) of uint8 arrays."""

from __future__ import annotations

from typing import Any

import numpy as np


class _MNIST:
    @staticmethod
    def load_data(path: Any = None
                  ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """x (N, 28, 28) uint8, y (N,) uint8; `path` a folder of the four IDX files (raw or .gz)
        instead of the shipped copy."""
        from tinygrad_lab.datasets import load_mnist

        return load_mnist(path)


mnist = _MNIST()

__all__ = ["mnist"]
