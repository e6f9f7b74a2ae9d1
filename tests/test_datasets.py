"""Tests for tinygrad_lab.datasets: the shipped MNIST / tiny-shakespeare and the IDX reader."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from tinygrad_lab.datasets import (
    DATA_DIR,
    MNIST_FILES,
    CharVocab,
    DatasetError,
    char_dataset,
    load_mnist,
    load_shakespeare,
    load_shakespeare_chars,
    read_idx,
    write_idx,
)

TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IDX_DTYPES = ["u1", "i1", "<i2", ">i2", "<i4", ">i4", "<f4", ">f4", "<f8", ">f8"]


# --------------------------------------------------------------------------- shipped MNIST


@pytest.fixture(scope="module")
def mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return load_mnist()


def test_shipped_files_present() -> None:
    for name in MNIST_FILES.values():
        assert (DATA_DIR / "mnist" / f"{name}.gz").is_file()
    assert (DATA_DIR / "mnist" / "SOURCE.md").is_file()
    assert (DATA_DIR / "tinyshakespeare" / "input.txt").is_file()
    assert (DATA_DIR / "tinyshakespeare" / "SOURCE.md").is_file()


def test_mnist_shapes_and_dtypes(mnist) -> None:
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8


def test_mnist_known_values(mnist) -> None:
    (x_train, y_train), (x_test, y_test) = mnist
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_train, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == TEST_LABEL_COUNTS
    assert x_train.mean() == pytest.approx(33.3184, abs=1e-4)
    assert x_test.mean() == pytest.approx(33.7912, abs=1e-4)
    assert x_train.max() == 255 and x_train.min() == 0


def test_mnist_normalize(mnist) -> None:
    (x_train, _), (x_test, _) = load_mnist(normalize=True)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert x_train.shape == (60000, 28, 28)
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert x_train.mean() == pytest.approx(0.1307, abs=1e-4)
    np.testing.assert_allclose(x_test[0], mnist[1][0][0] / 255.0, rtol=1e-6)


def test_mnist_cache_returns_fresh_copies() -> None:
    (x1, y1), _ = load_mnist()
    assert x1.flags.writeable and y1.flags.writeable
    x1[:] = 0
    y1[:] = 99
    (x2, y2), _ = load_mnist()
    assert x2 is not x1 and not np.shares_memory(x1, x2)
    assert y2[:3].tolist() == [5, 0, 4]
    assert x2.mean() == pytest.approx(33.3184, abs=1e-4)


# --------------------------------------------------------------------------- IDX round trip


def _check_round_trip(folder: Path, arr: np.ndarray, name: str) -> None:
    path = folder / name
    write_idx(path, arr)
    back = read_idx(path)
    assert back.shape == arr.shape
    assert back.dtype == arr.dtype.newbyteorder("=") and back.dtype.isnative
    assert back.flags.writeable
    # Compare bits, so NaNs and -0.0 must survive exactly too.
    assert back.tobytes() == arr.astype(arr.dtype.newbyteorder("=")).tobytes()
    assert os.listdir(folder) == [name]  # the temporary file was renamed, nothing left over


@given(
    arrays(
        dtype=st.sampled_from(IDX_DTYPES),
        shape=array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    st.booleans(),
)
def test_idx_round_trip(arr: np.ndarray, compressed: bool) -> None:
    # A fresh folder per example (a function-scoped tmp_path would be shared by all examples).
    with tempfile.TemporaryDirectory() as d:
        _check_round_trip(Path(d), arr, "data.idx.gz" if compressed else "data.idx")


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("shape", [(0,), (7,), (3, 4), (2, 3, 4), (1, 1, 1, 2)])
def test_idx_round_trip_fixed(tmp_path: Path, dtype: str, shape: tuple[int, ...]) -> None:
    arr = (np.arange(np.prod(shape)) - 3).astype(dtype).reshape(shape)
    _check_round_trip(tmp_path, arr, "a.gz")
    (tmp_path / "a.gz").unlink()
    _check_round_trip(tmp_path, arr, "a")


def test_idx_header_layout(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros((2, 3), dtype=">i4"))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 2])
    assert raw[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert len(raw) == 12 + 6 * 4


def test_idx_gzip_detected_by_magic_not_name(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "plain_name", arr, compress=True)
    assert (tmp_path / "plain_name").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "plain_name"), arr)
    write_idx(tmp_path / "raw.gz", arr, compress=False)
    with pytest.raises(DatasetError, match=r"raw\.gz.*not a gzip file"):
        read_idx(tmp_path / "raw.gz")


def test_write_idx_is_reproducible_and_overwrites(tmp_path: Path) -> None:
    p = tmp_path / "a.gz"
    write_idx(p, np.ones(5, dtype=np.uint8))
    first = p.read_bytes()
    write_idx(p, np.ones(5, dtype=np.uint8))
    assert p.read_bytes() == first
    write_idx(p, np.zeros(6, dtype=np.uint8))
    assert read_idx(p).tolist() == [0] * 6


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    for dtype in (np.int64, np.uint16, np.bool_, np.complex64):
        with pytest.raises(ValueError, match="cannot store dtype"):
            write_idx(tmp_path / "bad", np.zeros(3, dtype=dtype))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- corrupt files


def _idx_bytes(arr: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        write_idx(Path(d) / "x", arr)
        return (Path(d) / "x").read_bytes()


IMAGES = np.arange(3 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(3, 28, 28)


def _expect_error(path: Path, data: bytes, *patterns: str) -> DatasetError:
    path.write_bytes(data)
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    msg = str(info.value)
    assert path.name in msg
    for pattern in patterns:
        assert pattern in msg, msg
    return info.value


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path: Path, gz: bool) -> None:
    data = _idx_bytes(IMAGES)[:-100]
    if gz:
        data = gzip.compress(data)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    _expect_error(tmp_path / name, data, "truncated", "3x28x28", "2352 bytes", "2252")


@pytest.mark.parametrize("cut", [0, 2, 3, 4, 9, 15])
def test_truncated_header(tmp_path: Path, cut: int) -> None:
    _expect_error(tmp_path / "hdr", _idx_bytes(IMAGES)[:cut], "truncated header")


def test_bad_magic(tmp_path: Path) -> None:
    data = b"\x00\x01" + _idx_bytes(IMAGES)[2:]
    _expect_error(tmp_path / "magic", data, "bad magic number 0x00010803")
    _expect_error(tmp_path / "text", b"hello world, not IDX", "bad magic number")


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_type_code(tmp_path: Path, code: int) -> None:
    data = bytearray(_idx_bytes(IMAGES))
    data[2] = code
    _expect_error(tmp_path / "code", bytes(data), f"unknown IDX type code 0x{code:02X}")


@pytest.mark.parametrize("extra", [1, 784])
def test_trailing_bytes(tmp_path: Path, extra: int) -> None:
    data = _idx_bytes(IMAGES) + b"\x00" * extra
    _expect_error(tmp_path / "long", data, f"{extra} trailing bytes", "2352 bytes")


def test_wrong_itemsize_length(tmp_path: Path) -> None:
    # 5 int32 values announced, 19 bytes of data present: not a whole number of items.
    data = _idx_bytes(np.arange(5, dtype=">i4"))[:-1]
    _expect_error(tmp_path / "ints", data, "truncated", "20 bytes", "19")


def test_corrupt_gzip_cut_in_half(tmp_path: Path) -> None:
    good = gzip.compress(_idx_bytes(IMAGES))
    _expect_error(tmp_path / "cut.gz", good[: len(good) // 2], "corrupt gzip")


def test_corrupt_gzip_flipped_bytes(tmp_path: Path) -> None:
    good = bytearray(gzip.compress(_idx_bytes(IMAGES)))
    for i in range(20, len(good) - 8, 7):
        good[i] ^= 0xFF
    _expect_error(tmp_path / "flip.gz", bytes(good), "corrupt gzip")


def test_corrupt_gzip_bad_crc(tmp_path: Path) -> None:
    good = bytearray(gzip.compress(_idx_bytes(IMAGES)))
    good[-8] ^= 0x01  # CRC32 of the uncompressed data
    _expect_error(tmp_path / "crc.gz", bytes(good), "corrupt gzip")


def test_corrupt_shipped_file_copy(tmp_path: Path) -> None:
    good = (DATA_DIR / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    _expect_error(tmp_path / "t10k-labels-idx1-ubyte.gz", good[: len(good) // 2], "corrupt gzip")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope.*file not found"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- load_mnist(data_dir)


def _fake_mnist(folder: Path, gz: bool, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, arr in arrays.items():
        write_idx(folder / (MNIST_FILES[key] + (".gz" if gz else "")), arr)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_dir(tmp_path: Path, gz: bool) -> None:
    arrays = _fake_mnist(tmp_path, gz)
    (x_train, y_train), (x_test, y_test) = load_mnist(data_dir=tmp_path)
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_train, arrays["train_labels"])
    np.testing.assert_array_equal(x_test, arrays["test_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])
    assert x_train.dtype == np.uint8 and y_test.dtype == np.uint8
    (xn, _), _ = load_mnist(data_dir=str(tmp_path), normalize=True)
    assert xn.dtype == np.float32
    np.testing.assert_allclose(xn, arrays["train_images"] / 255.0, rtol=1e-6)


def test_load_mnist_from_dir_mixed_compression(tmp_path: Path) -> None:
    arrays = _fake_mnist(tmp_path, gz=True)
    name = MNIST_FILES["test_labels"]
    (tmp_path / f"{name}.gz").unlink()
    write_idx(tmp_path / name, arrays["test_labels"])
    _, (_, y_test) = load_mnist(data_dir=tmp_path)
    np.testing.assert_array_equal(y_test, arrays["test_labels"])


@pytest.mark.parametrize("key", list(MNIST_FILES))
def test_load_mnist_missing_file(tmp_path: Path, key: str) -> None:
    _fake_mnist(tmp_path, gz=True)
    (tmp_path / f"{MNIST_FILES[key]}.gz").unlink()
    with pytest.raises(DatasetError) as info:
        load_mnist(data_dir=tmp_path)
    msg = str(info.value)
    assert MNIST_FILES[key] in msg and str(tmp_path) in msg and "missing" in msg


def test_load_mnist_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        load_mnist(data_dir=tmp_path / "absent")


def test_load_mnist_count_mismatch(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / MNIST_FILES["train_labels"], np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetError) as info:
        load_mnist(data_dir=tmp_path)
    msg = str(info.value)
    assert MNIST_FILES["train_images"] in msg and MNIST_FILES["train_labels"] in msg
    assert "5 images" in msg and "4 labels" in msg


def test_load_mnist_swapped_files(tmp_path: Path) -> None:
    arrays = _fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / MNIST_FILES["test_images"], arrays["test_labels"])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.*0x00000803.*0x00000801"):
        load_mnist(data_dir=tmp_path)


def test_load_mnist_corrupt_file_in_dir(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, gz=True)
    p = tmp_path / (MNIST_FILES["train_images"] + ".gz")
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz.*corrupt gzip"):
        load_mnist(data_dir=tmp_path)


# --------------------------------------------------------------------------- tiny shakespeare


def test_shakespeare_text() -> None:
    text = load_shakespeare()
    assert len(text) == 1115394
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert text.endswith("Whiles thou art waking.\n")
    assert text.count("\n") == 40000


def test_shakespeare_vocab_and_split() -> None:
    train, val, vocab = load_shakespeare_chars()
    assert vocab.size == len(vocab) == 65
    assert "".join(vocab.itos) == (
        "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    )
    assert vocab.stoi["\n"] == 0 and vocab.stoi["z"] == 64
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert len(train) == 1003854 and len(val) == 111540
    assert vocab.decode(np.concatenate([train, val])) == load_shakespeare()
    assert vocab.decode(train[:14]) == "First Citizen:"


def test_shakespeare_split_fraction() -> None:
    train, val, _ = load_shakespeare_chars(val_fraction=0.5)
    assert len(train) == 557697 and len(val) == 557697
    train, val, _ = load_shakespeare_chars(val_fraction=0.0)
    assert len(train) == 1115394 and len(val) == 0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="val_fraction"):
            load_shakespeare_chars(val_fraction=bad)


def test_char_vocab_basics() -> None:
    vocab = CharVocab("hello world")
    assert vocab.itos == [" ", "d", "e", "h", "l", "o", "r", "w"]
    ids = vocab.encode("hello")
    assert ids.dtype == np.int64 and ids.tolist() == [3, 2, 4, 4, 5]
    assert vocab.decode(ids) == "hello"
    assert vocab.decode([7, 5, 6, 4, 1]) == "world"
    assert vocab.encode("").tolist() == [] and vocab.decode([]) == ""


def test_char_vocab_errors() -> None:
    vocab = CharVocab("abc")
    with pytest.raises(ValueError, match=r"'z' \(at index 2\)"):
        vocab.encode("abzc")
    with pytest.raises(ValueError, match="'~'"):
        vocab.encode("~")
    for bad in ([3], [-1], [0, 1, 7]):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            vocab.decode(bad)
    with pytest.raises(ValueError, match=r"'a' .*not in the vocabulary"):
        CharVocab("").encode("a")


@given(st.text(min_size=0, max_size=200))
def test_char_vocab_round_trip(text: str) -> None:
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    assert ids.shape == (len(text),)
    assert ids.min(initial=0) >= 0 and ids.max(initial=0) < max(vocab.size, 1)
    assert vocab.decode(ids) == text
    assert vocab.itos == sorted(set(text))


def test_char_dataset_small() -> None:
    train, val, vocab = char_dataset("abcdefghij", val_fraction=0.2)
    assert vocab.decode(train) == "abcdefgh" and vocab.decode(val) == "ij"
