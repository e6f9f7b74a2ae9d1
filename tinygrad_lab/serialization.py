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
        # mkstemp makes the file private (0600); give the checkpoint the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read what `save` wrote; a damaged file raises ValueError naming the file."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):  # a lone .npy array, not an .npz archive
            raise ValueError("an .npy array, not an .npz archive")
        with data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable tinygrad_lab checkpoint ({e})") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host(value: Any) -> np.ndarray:
    from tinygrad_lab.tensor import Tensor

    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "get"):  # a CuPy array
        return value.get()
    return np.asarray(value)


_META_KEY = "__meta__"


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any],
                    meta: Mapping[str, Any]) -> None:
    """Weights plus a JSON-able `meta` dict (recipe name, config, vocabulary), atomically."""
    import json

    arrays = {f"state/{k}": v for k, v in state.items()}
    arrays[_META_KEY] = np.array(json.dumps(dict(meta)))
    save(arrays, path)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(state, meta) from a file `save_checkpoint` wrote; names the file on any fault."""
    import json

    data = load(path)
    if _META_KEY not in data:
        raise ValueError(f"{path}: not a tinygrad_lab checkpoint (no {_META_KEY} entry)")
    try:
        meta = json.loads(str(data[_META_KEY]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    state = {k[len("state/"):]: v for k, v in data.items() if k.startswith("state/")}
    return state, meta
