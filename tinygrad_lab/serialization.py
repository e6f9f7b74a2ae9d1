"""Saving and loading arrays by name, written atomically (temp file, fsync, then rename), never
with pickle: safetensors (`.safetensors`, the ecosystem's format) or NumPy `.npz` (any other
name, for `save`); `load` reads either, whatever the name.

Anything that could not be read back (None, a dict, an object array, a non-string key) is
refused at save time, naming the key. Temp files a killed writer left beside the target
(`.<name>.<pid>.*.tmp`) are removed by the next save of that target.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_STARTED = time.time()  # temp files older than this process, of a dead writer, are stale


def _is_safetensors(path: Path, default: bool = False) -> bool:
    if path.suffix == ".safetensors":
        return True
    return default and path.suffix != ".npz"


def check_writable(path: str | os.PathLike[str]) -> Path:
    """The expanded path when a file can be written there, else ValueError in one line
    ("cannot save to ...: ... is a file"); run it before a long job's data loads."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ValueError(f"cannot save to {path}: it is a directory")
    parent = target.parent
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            break
        parent = parent.parent
    for ancestor in [parent, *parent.parents]:
        if ancestor.exists() and not ancestor.is_dir():
            raise ValueError(f"cannot save to {path}: {ancestor} is a file")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot save to {path}: {parent} is not writable")
    return target


def _validate(state: Mapping[str, Any], safetensors: bool,
              check_finite: bool) -> dict[str, np.ndarray]:
    if not isinstance(state, Mapping):
        raise TypeError(f"save: expected a mapping of name -> array, got {type(state).__name__}")
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"save: key {name!r} is not a non-empty string")
        if name == _META_KEY or (safetensors and name == "__metadata__"):
            raise ValueError(f"save: key {name!r} is reserved")
        if value is None or isinstance(value, (Mapping, str, bytes)):
            raise ValueError(f"save: key {name!r} holds a {type(value).__name__}, not an array "
                             "(it could not be loaded back)")
        array = _host(value)
        if array.dtype.kind not in "biufc" or (safetensors and array.dtype.kind == "c"):
            raise ValueError(f"save: key {name!r} has dtype {array.dtype}, which "
                             f"{'safetensors' if safetensors else '.npz'} cannot hold without "
                             "pickle")
        if check_finite and array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise NonFiniteWeights(f"key {name!r} holds nan or inf values")
        arrays[name] = np.ascontiguousarray(array)
    return arrays


class NonFiniteWeights(ValueError):
    """A checkpoint would hold nan or inf: refused, so a diverged run never replaces a file."""


def save(state: Mapping[str, Any], path: str | os.PathLike[str], *,
         check_finite: bool = False) -> None:
    """Write name -> array (or Tensor) to `path`: safetensors when it ends in `.safetensors`,
    else .npz; a crash never leaves a half file. `~` expands to the home folder. With
    `check_finite` a nan or inf anywhere refuses the write (NonFiniteWeights)."""
    _write(state, Path(path).expanduser(), None, check_finite, safetensors_default=False)


def _write(state: Mapping[str, Any], path: Path, meta: Mapping[str, Any] | None,
           check_finite: bool, safetensors_default: bool) -> None:
    use_st = _is_safetensors(path, safetensors_default)
    try:
        arrays = _validate(state, use_st, check_finite)
    except NonFiniteWeights as e:
        raise NonFiniteWeights(f"refusing to write {path}: {e}") from None
    check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if use_st:
                from safetensors.numpy import save as st_save

                header = {_META_KEY: json.dumps(dict(meta))} if meta is not None else None
                f.write(st_save(arrays, metadata=header))
            else:
                _write_npz(f, arrays, meta)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give the checkpoint the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_npz(f: Any, arrays: Mapping[str, np.ndarray],
               meta: Mapping[str, Any] | None) -> None:
    """np.savez's layout (one NAME.npy per array), written without keyword arguments, so no
    key is swallowed (`allow_pickle`, `file`), and without pickle."""
    entries = dict(arrays)
    if meta is not None:
        entries[_META_KEY] = np.array(json.dumps(dict(meta)))
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in entries.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, array, allow_pickle=False)


def _remove_stale_temps(path: Path) -> None:
    """Delete `.<name>.<pid>.*.tmp` files of this target whose writer is gone (or, for the
    older `.<name>.*.tmp` names, that are older than this process)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid_text = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        try:
            stale = (not _alive(int(pid_text))) if pid_text.isdigit() else (
                tmp.stat().st_mtime < _STARTED)
            if stale:
                tmp.unlink()
        except OSError:
            continue


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own earlier write that was interrupted
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load(path: str | os.PathLike[str], device: str | None = None, *,
         map_location: str | None = None) -> dict[str, Any]:
    """Read what `save` wrote (either format); a damaged file raises ValueError naming it.

    NumPy arrays by name; with `device` (or torch's spelling, `map_location`), Tensors on that
    device instead, each copied there once (`model.load_state_dict` then copies on the device).
    """
    return _place(_read(Path(path).expanduser())[0], device, map_location)


def _place(arrays: dict[str, Any], device: str | None, map_location: str | None) -> Any:
    """The numeric arrays as Tensors on the device asked for (by either name), or as they are."""
    if device is not None and map_location is not None and device != map_location:
        raise ValueError(f"load: device={device!r} and map_location={map_location!r} disagree")
    where = device if device is not None else map_location
    if where is None:
        return arrays
    from tinygrad_lab.tensor import Tensor

    return {k: Tensor(v, device=where) if v.dtype.kind in "biuf" else v
            for k, v in arrays.items()}


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """(arrays, checkpoint meta or None); an .npz keeps its `__meta__` entry among the arrays
    (as `load` always returned it)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK":  # not a zip: safetensors (an 8-byte header length, then JSON)
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as st:
                header = st.metadata() or {}
                arrays = {k: st.get_tensor(k) for k in st.keys()}
        except Exception as e:  # safetensors raises its own SafetensorError
            raise ValueError(f"{path}: not a readable tinygrad_lab checkpoint ({e})") from None
        return arrays, _parse_meta(path, header.get(_META_KEY))
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):  # a lone .npy array, not an .npz archive
            raise ValueError("an .npy array, not an .npz archive")
        with data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable tinygrad_lab checkpoint ({e})") from None
    raw = arrays.get(_META_KEY)
    return arrays, _parse_meta(path, str(raw) if raw is not None else None)


def _parse_meta(path: Path, raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: checkpoint metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: checkpoint metadata is not a JSON object")
    return meta


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host(value: Any) -> np.ndarray:
    from tinygrad_lab.tensor import Tensor

    if isinstance(value, Tensor):
        return value.numpy()
    if type(value).__module__.split(".")[0] == "cupy":
        return value.get()
    return np.asarray(value)


_META_KEY = "__meta__"


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any],
                    meta: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> None:
    """Weights (`state/NAME`), any further `arrays` (e.g. optimizer state, by their own names)
    and a JSON-able `meta` dict (recipe name, config, vocabulary, training position), atomically.
    safetensors unless the name ends in `.npz`. Refuses (NonFiniteWeights) to write a nan or inf
    anywhere, so a diverged run never replaces a good checkpoint."""
    entries = {f"state/{k}": v for k, v in state.items()}
    for k, v in (arrays or {}).items():
        if k.startswith("state/") or k in entries:
            raise ValueError(f"save_checkpoint: array name {k!r} clashes with the weights")
        entries[k] = v
    try:
        json_meta = json.loads(json.dumps(dict(meta), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"save_checkpoint: meta is not plain JSON ({e})") from None
    _write(entries, Path(path).expanduser(), json_meta, True, safetensors_default=True)


def load_checkpoint(path: str | os.PathLike[str], *, with_arrays: bool = False,
                    device: str | None = None, map_location: str | None = None) -> Any:
    """(state, meta) from a file `save_checkpoint` wrote; names the file on any fault. With
    `with_arrays`, (state, meta, the other arrays by name). With `device` (or `map_location`)
    the weights come as Tensors on that device; the other arrays stay NumPy (an optimizer's
    load_state_dict copies its state to each parameter's device itself)."""
    arrays, meta = _read(Path(path).expanduser())
    if meta is None:
        raise ValueError(f"{path}: not a tinygrad_lab checkpoint (no {_META_KEY} entry)")
    state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
    state = _place(state, device, map_location)
    if not with_arrays:
        return state, meta
    rest = {k: v for k, v in arrays.items() if not k.startswith("state/") and k != _META_KEY}
    return state, meta, rest
