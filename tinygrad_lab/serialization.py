"""Saving and loading arrays by name: NumPy .npz, written atomically (temp file, then rename)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def save(state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write name -> array (or Tensor) to `path` as .npz; a crash never leaves a half file."""
    path = Path(path)
    arrays = {name: _host(value) for name, value in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read what `save` wrote; a damaged file raises ValueError naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable tinygrad_lab checkpoint ({e})") from None


def _host(value: Any) -> np.ndarray:
    from tinygrad_lab.tensor import Tensor

    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "get"):  # a CuPy array
        return value.get()
    return np.asarray(value)
