"""Tensor constructors (tinygrad_lab/creation.py) against PyTorch's: values, default dtypes,
shape arguments and their errors, devices, requires_grad, and seeded random draws."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import Tensor
from tinygrad_lab.backends import get_backend
from tinygrad_lab.testing.devices import DeviceCase


def _same(ours: Tensor, theirs: torch.Tensor, exact: bool = True) -> None:
    assert ours.dtype == np.dtype(str(theirs.dtype).removeprefix("torch."))
    assert ours.shape == tuple(theirs.shape)
    if exact:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    else:
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["zeros", "ones"])
@pytest.mark.parametrize("size", [(), (0,), (2, 3), (1, 0, 2)])
def test_filled_match_torch_in_every_size_form(name: str, size: tuple[int, ...]) -> None:
    want = getattr(torch, name)(size)
    for ours in (getattr(tl, name)(*size), getattr(tl, name)(size), getattr(tl, name)(list(size))):
        _same(ours, want)
    assert getattr(tl, name)(*size, dtype=np.int32).dtype == np.int32
    assert getattr(Tensor, name)(*size).shape == size  # the staticmethods still work


def test_empty_full_and_eye_match_torch() -> None:
    assert tl.empty(2, 3).shape == (2, 3) and tl.empty(2, 3).dtype == np.float32
    for value in (True, 3, 2.5, -1):
        _same(tl.full((2, 2), value), torch.full((2, 2), value))
    _same(tl.full(3, 1.5, dtype=np.float64), torch.full((3,), 1.5, dtype=torch.float64))
    for n, m in ((3, None), (2, 4), (0, 2), (4, 1)):
        _same(tl.eye(n, m), torch.eye(n, m) if m is not None else torch.eye(n))


@settings(max_examples=40)
@given(start=st.integers(-10, 10), length=st.integers(0, 12), step=st.sampled_from([1, 2, 3, -1,
                                                                                    -4]))
def test_arange_of_ints_matches_torch(start: int, length: int, step: int) -> None:
    end = start + length * (1 if step > 0 else -1)
    _same(tl.arange(start, end, step), torch.arange(start, end, step))
    if step == 1 and start >= 0:
        _same(tl.arange(start), torch.arange(start))


@settings(max_examples=40)
@given(start=st.floats(-5, 5), length=st.floats(0, 5), step=st.sampled_from([0.1, 0.25, 0.7,
                                                                             -0.3, 1.0]))
def test_arange_of_floats_matches_torch(start: float, length: float, step: float) -> None:
    end = start + length * (1 if step > 0 else -1)
    _same(tl.arange(start, end, step), torch.arange(start, end, step), exact=False)


@settings(max_examples=40)
@given(start=st.floats(-5, 5), end=st.floats(-5, 5), steps=st.integers(0, 9))
def test_linspace_matches_torch(start: float, end: float, steps: int) -> None:
    _same(tl.linspace(start, end, steps), torch.linspace(start, end, steps), exact=False)
    _same(tl.linspace(start, end, steps, dtype=np.float64),
          torch.linspace(start, end, steps, dtype=torch.float64), exact=False)
    if steps >= 2:  # both ends exact, as torch
        ends = tl.linspace(start, end, steps, dtype=np.float64).numpy()[[0, -1]]
        np.testing.assert_array_equal(ends, [start, end])


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: tl.zeros(-1, 2), ValueError, "non-negative"),
    (lambda: tl.ones(2.0), TypeError, "ints"),
    (lambda: tl.zeros(2, dtype=np.complex64), TypeError, "dtype"),
    (lambda: tl.arange(0, 5, 0), ValueError, "nonzero"),
    (lambda: tl.arange(5, 0), ValueError, "sign of step"),
    (lambda: tl.arange(0, float("inf")), ValueError, "finite"),
    (lambda: tl.linspace(0, 1, -1), ValueError, "non-negative"),
    (lambda: tl.linspace(0, 1, 2.0), TypeError, "steps"),
    (lambda: tl.eye(-2), ValueError, "non-negative"),
    (lambda: tl.full((2,), "a"), TypeError, "fill_value"),
    (lambda: tl.randint(3, 3, (2,)), ValueError, "less than"),
    (lambda: tl.randint(5), TypeError, "size"),
    (lambda: tl.rand(2, dtype=np.int64), TypeError, "floating"),
    (lambda: tl.zeros(2, dtype=np.int64, requires_grad=True), TypeError, "floating"),
    (lambda: tl.zeros_like(np.zeros(2)), TypeError, "Tensor"),
])
def test_bad_arguments_are_named(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_default_dtypes_follow_torch() -> None:
    assert tl.arange(3).dtype == np.int64 and tl.arange(3.0).dtype == np.float32
    assert tl.arange(0, 3, 0.5).dtype == np.float32
    assert tl.rand(2).dtype == tl.randn(2).dtype == tl.linspace(0, 1, 3).dtype == np.float32
    assert tl.randint(0, 4, (2,)).dtype == np.int64
    assert tl.randint(4, (2,), dtype=np.int32).dtype == np.int32


def test_requires_grad_makes_a_leaf() -> None:
    for t in (tl.zeros(2, requires_grad=True), tl.randn(2, 2, requires_grad=True),
              tl.linspace(0, 1, 3, requires_grad=True), tl.eye(2, requires_grad=True)):
        assert t.requires_grad and t.is_leaf
        (t * t).sum().backward()
        assert t.grad is not None and t.grad.shape == t.shape


def test_like_constructors_take_shape_dtype_and_device() -> None:
    x = tl.ones(2, 3, dtype=np.float64)
    for name in ("zeros_like", "ones_like", "empty_like", "rand_like", "randn_like"):
        y = getattr(tl, name)(x)
        assert (y.shape, y.dtype, y.device) == ((2, 3), np.float64, "cpu")
        assert getattr(tl, name)(x, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(tl.full_like(x, 7).numpy(), np.full((2, 3), 7.0))
    assert tl.zeros_like(tl.arange(3)).dtype == np.int64


def test_seeded_draws_repeat_and_differ_by_seed() -> None:
    def draws() -> list[np.ndarray]:
        return [tl.rand(3, 4).numpy(), tl.randn(5).numpy(), tl.randint(-2, 9, (6,)).numpy(),
                tl.rand_like(tl.zeros(2)).numpy()]

    tl.manual_seed(7)
    first = draws()
    tl.manual_seed(7)
    for a, b in zip(first, draws()):
        np.testing.assert_array_equal(a, b)
    tl.manual_seed(8)
    assert not np.array_equal(first[1], draws()[1])


def test_random_distributions() -> None:
    tl.manual_seed(0)
    u = tl.rand(20000, dtype=np.float64).numpy()
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    z = tl.randn(20000).numpy()
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03 and np.isfinite(z).all()
    k = tl.randint(-3, 4, (5000,)).numpy()
    assert set(np.unique(k)) == set(range(-3, 4))
    wide = tl.randint(-(2**62), 2**62, (100,)).numpy()  # wider than a float64 resolves
    assert wide.dtype == np.int64 and np.abs(wide).max() > 2**55


@pytest.mark.parametrize("device", ["standin"], indirect=True)
def test_constructors_on_another_device(device: DeviceCase) -> None:
    name = get_backend(device.device).device  # the full name: "standin:0"
    for t in (tl.zeros(2, device=device.device), tl.arange(4, device=device.device),
              tl.linspace(0, 1, 3, device=device.device), tl.eye(2, device=device.device),
              tl.full((2,), 1.5, device=device.device), tl.randn(3, device=device.device),
              tl.randint(5, (3,), device=device.device)):
        assert t.device == name
    x = tl.ones(2, 2, device=device.device, requires_grad=True)
    assert tl.zeros_like(x).device == name
    assert tl.zeros_like(x, device="cpu").device == "cpu"
    np.testing.assert_array_equal(tl.linspace(-1, 2, 7, device=device.device).numpy(),
                                  tl.linspace(-1, 2, 7).numpy())
    tl.manual_seed(3)
    here = tl.randn(4, device=device.device).numpy()
    tl.manual_seed(3)
    np.testing.assert_array_equal(here, tl.randn(4, device=device.device).numpy())
    (x.tril() * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 0.0], [2.0, 2.0]])


def test_tril_triu_match_torch_and_send_their_triangle_back() -> None:
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    for k in (-1, 0, 2):
        _same(tl.tril(Tensor(a), k), torch.tril(torch.tensor(a), k))
        _same(tl.triu(Tensor(a), diagonal=k), torch.triu(torch.tensor(a), diagonal=k))
    x = Tensor(np.ones((3, 3)), requires_grad=True)
    x.triu(1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.triu(np.ones((3, 3)), 1))
