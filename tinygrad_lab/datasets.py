"""Real datasets shipped with the package: MNIST (IDX files) and tiny-shakespeare (text).

The data lives inside the package (``tinygrad_lab/data``) so examples and tests work offline.
Every problem with a data file is reported as :class:`DatasetError` naming the file and the
defect, because a silent short read would otherwise show up much later as a training bug.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import secrets
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_DIR",
    "MNIST_FILES",
    "CharVocab",
    "DatasetError",
    "char_dataset",
    "load_mnist",
    "load_shakespeare",
    "load_shakespeare_chars",
    "read_idx",
    "write_idx",
]

# Located next to this module (not via the working directory) so it also works from a wheel.
DATA_DIR: Path = Path(__file__).resolve().parent / "data"
_MNIST_DIR = DATA_DIR / "mnist"
_SHAKESPEARE_FILE = DATA_DIR / "tinyshakespeare" / "input.txt"

# The four standard file names (MNIST and Fashion-MNIST), each may also end in ".gz".
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type byte -> big-endian numpy dtype, as in the format's specification.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KNOWN_CODES = ", ".join(f"0x{c:02X} ({d.name})" for c, d in _IDX_TYPES.items())
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(ValueError):
    """A data file is missing, truncated or corrupt; the message names the file and the defect."""


def _idx_code(dtype: np.dtype) -> int | None:
    """IDX type byte for ``dtype`` (any byte order), or None when IDX cannot store it."""
    for code, idx_dtype in _IDX_TYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    return None


def _magic(dtype: np.dtype, ndim: int) -> str:
    """The 4-byte IDX magic number for ``dtype``/``ndim``, formatted for error messages."""
    code = _idx_code(dtype)
    return "unknown" if code is None else f"0x{(code << 8) | ndim:08X}"


def _shape_text(dims: tuple[int, ...]) -> str:
    return "x".join(map(str, dims)) if dims else "() (0 dimensions)"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian array of the stored shape.

    Gzip is detected by its magic bytes, not the file name, so renamed files still work. The
    header and the data length are checked exactly: a truncated download or a file with extra
    bytes is an error rather than a silently misshapen array.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{p}: file not found") from None
    except OSError as e:
        raise DatasetError(f"{p}: cannot read file: {e}") from e

    where = "file"
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DatasetError(f"{p}: corrupt gzip stream (truncated or damaged): {e}") from e
        where = "decompressed file"
    elif p.suffix == ".gz":
        raise DatasetError(
            f"{p}: not a gzip file: name ends in .gz but the first bytes are {raw[:2].hex()!r}, "
            f"expected '1f8b'"
        )

    if len(raw) < 4:
        raise DatasetError(
            f"{p}: truncated header: {where} has {len(raw)} bytes, an IDX header needs at least 4"
        )
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0:
        raise DatasetError(
            f"{p}: bad magic number 0x{magic:08X}: the first two bytes must be zero "
            f"(not an IDX file?)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise DatasetError(
            f"{p}: unknown IDX type code 0x{code:02X} in magic number 0x{magic:08X}; "
            f"known codes: {_KNOWN_CODES}"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetError(
            f"{p}: truncated header: magic number 0x{magic:08X} announces {ndim} dimensions, "
            f"so the header needs {header_len} bytes, {where} has {len(raw)}"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    have = len(raw) - header_len
    if have != expected:
        what = "truncated" if have < expected else f"{have - expected} trailing bytes"
        raise DatasetError(
            f"{p}: {what}: header says {_shape_text(dims)} {dtype.name} = {expected} bytes of "
            f"data, {where} has {have}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=header_len)
    # astype always copies here: the result is writable and independent of ``raw``.
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``compress`` (default: name ends .gz).

    The file is written to a temporary name in the same folder and then renamed over ``path``,
    so a crash or a full disk never leaves a half-written file under the real name.
    """
    p = Path(path)
    arr = np.asarray(array)
    code = _idx_code(arr.dtype)
    if code is None:
        raise ValueError(f"{p}: IDX cannot store dtype {arr.dtype}; supported: {_KNOWN_CODES}")
    if arr.ndim > 255:
        raise ValueError(f"{p}: IDX stores at most 255 dimensions, array has {arr.ndim}")
    if any(d >= 2**32 for d in arr.shape):
        raise ValueError(f"{p}: IDX dimensions must be below 2**32, got shape {arr.shape}")
    if compress is None:
        compress = p.suffix == ".gz"

    header = bytes([0, 0, code, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    body = np.ascontiguousarray(arr, dtype=_IDX_TYPES[code]).tobytes()

    tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 lets the umask decide permissions, like a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(fd, "wb") as f:
            if compress:
                stored_name = p.name[:-3] if p.name.endswith(".gz") else p.name
                # mtime=0 makes the output reproducible byte for byte.
                with gzip.GzipFile(filename=stored_name, mode="wb", fileobj=f, mtime=0) as gz:
                    gz.write(header)
                    gz.write(body)
            else:
                f.write(header)
                f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _find_idx(folder: Path, name: str) -> Path:
    """``folder/name`` or ``folder/name.gz``, whichever exists (uncompressed first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder / name}: missing file: neither {name} nor {name}.gz in {folder}")


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one images/labels pair and check that they belong together."""
    x = read_idx(images_path)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise DatasetError(
            f"{images_path}: expected uint8 images with 3 dimensions (IDX magic 0x00000803), "
            f"got {x.dtype} with shape {x.shape} (IDX magic {_magic(x.dtype, x.ndim)})"
        )
    y = read_idx(labels_path)
    if y.dtype != np.uint8 or y.ndim != 1:
        raise DatasetError(
            f"{labels_path}: expected uint8 labels with 1 dimension (IDX magic 0x00000801), "
            f"got {y.dtype} with shape {y.shape} (IDX magic {_magic(y.dtype, y.ndim)})"
        )
    if len(x) != len(y):
        raise DatasetError(
            f"image/label count mismatch: {images_path} has {len(x)} images but "
            f"{labels_path} has {len(y)} labels"
        )
    return x, y


def _read_mnist_dir(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder (expected the four MNIST IDX files in it)")
    paths = {key: _find_idx(folder, name) for key, name in MNIST_FILES.items()}
    x_train, y_train = _read_split(paths["train_images"], paths["train_labels"])
    x_test, y_test = _read_split(paths["test_images"], paths["test_labels"])
    return x_train, y_train, x_test, y_test


@functools.cache
def _shipped_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the shipped MNIST once per process (about 0.3 s); the arrays are made read-only."""
    arrays = _read_mnist_dir(_MNIST_DIR)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, normalize: bool = False
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return ``(x_train, y_train), (x_test, y_test)`` like ``keras.datasets.mnist.load_data``.

    x is uint8 of shape (N, rows, cols) (28x28 for MNIST), y is uint8 of shape (N,). Without
    ``data_dir`` the MNIST copy shipped with the package is used (decoded once, then cached);
    with it, the four standard IDX names (raw or .gz) are read from that folder, which also
    fits Fashion-MNIST. ``normalize=True`` gives float32 images scaled to [0, 1]. The arrays
    returned are always fresh copies, so callers may modify them freely.
    """
    if data_dir is None:
        x_train, y_train, x_test, y_test = _shipped_mnist()
    else:
        x_train, y_train, x_test, y_test = _read_mnist_dir(Path(data_dir))

    def images(x: np.ndarray) -> np.ndarray:
        if not normalize:
            return x.copy()
        out = x.astype(np.float32)
        out /= np.float32(255.0)
        return out

    return (images(x_train), y_train.copy()), (images(x_test), y_test.copy())


@functools.cache
def load_shakespeare() -> str:
    """Return the shipped tiny-shakespeare corpus (1,115,394 characters of plain ASCII)."""
    try:
        return _SHAKESPEARE_FILE.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{_SHAKESPEARE_FILE}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{_SHAKESPEARE_FILE}: cannot read as UTF-8 text: {e}") from e


def _codepoints(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as uint32, computed in C instead of a Python loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharVocab:
    """Character-level vocabulary: ids are positions in the sorted set of distinct characters.

    Sorting makes the ids deterministic (the same text always gives the same vocabulary),
    which matters when a checkpoint is reloaded in another process.
    """

    def __init__(self, text: str | Iterable[str]) -> None:
        chars = sorted(set(text))
        if any(len(c) != 1 for c in chars):
            raise ValueError("CharVocab needs single characters")
        self.itos: list[str] = chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}
        self._cps = _codepoints("".join(chars))  # sorted, since chars are sorted by code point

    @property
    def size(self) -> int:
        """Number of distinct characters (the model's vocabulary size)."""
        return len(self.itos)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"CharVocab(size={self.size}, chars={''.join(self.itos)!r})"

    def encode(self, text: str) -> np.ndarray:
        """Map ``text`` to an int64 array of ids; a character outside the vocabulary is an error."""
        cps = _codepoints(text)
        if self.size == 0:
            ids = np.zeros(len(cps), dtype=np.int64)
            ok = np.zeros(len(cps), dtype=bool)
        else:
            ids = np.searchsorted(self._cps, cps).astype(np.int64)
            ok = self._cps[np.minimum(ids, self.size - 1)] == cps
        if not ok.all():
            i = int(np.argmin(ok))
            raise ValueError(f"character {text[i]!r} (at index {i}) is not in the vocabulary")
        return ids

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Map ids back to text; an id outside ``0 .. size-1`` is an error."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        if arr.size == 0:
            return ""
        if arr.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
        arr = arr.reshape(-1)
        bad = (arr < 0) | (arr >= self.size)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"id {int(arr[i])} (at index {i}) is outside the vocabulary 0..{self.size - 1}"
            )
        return self._cps[arr].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def char_dataset(text: str, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray, CharVocab]:
    """Encode ``text`` and split it at the end: first part train, last ``val_fraction`` val.

    A contiguous split (as in nanoGPT) keeps validation text unseen, unlike a random split of
    overlapping windows.
    """
    if not 0.0 <= val_fraction <= 1.0:  # also rejects NaN
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    n_train = int(len(ids) * (1.0 - val_fraction))
    return ids[:n_train], ids[n_train:], vocab


def load_shakespeare_chars(
    val_fraction: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, CharVocab]:
    """``char_dataset`` on the shipped tiny-shakespeare: (train_ids, val_ids, vocab)."""
    return char_dataset(load_shakespeare(), val_fraction)
