"""The kernels' own float32 exp, tanh and log1p (kernels/_math.py) against float64 NumPy: at most
2 ulp over a dense sample of every float32 (one bit pattern in 997, both signs, normal and
subnormal) and over the edges (overflow, underflow, subnormal results, +-0, +-inf, NaN, log1p at
and below -1); float64 arguments go to libm and equal NumPy's float64 functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

numba = pytest.importorskip("numba")

from tinygrad_lab.kernels import _math  # noqa: E402

MAX_ULP = 2.0
F32_MAX = float(np.finfo(np.float32).max)


@numba.njit(cache=False, error_model="numpy")
def _apply_exp(x, out):  # x (N,) -> out (N,)
    for i in range(x.size):
        out[i] = _math.exp(x[i])


@numba.njit(cache=False, error_model="numpy")
def _apply_tanh(x, out):  # x (N,) -> out (N,)
    for i in range(x.size):
        out[i] = _math.tanh(x[i])


@numba.njit(cache=False, error_model="numpy")
def _apply_log1p(x, out):  # x (N,) -> out (N,)
    for i in range(x.size):
        out[i] = _math.log1p(x[i])


KERNEL_FUNCTIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "exp": (_apply_exp, np.exp),
    "tanh": (_apply_tanh, np.tanh),
    "log1p": (_apply_log1p, np.log1p),
}

EDGES = np.array([
    0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754944e-38, -1.1754944e-38,
    88.72283, 88.722839, 88.7228394, 88.8, 89.0, 1e30, -87.33654, -87.3366, -103.27893,
    -103.9720, -103.9721, -103.98, -104.0, -150.0, -1e30, 0.625, -0.625, 0.62499994, 9.0, 9.1,
    -9.1, 44.0, 1e-20, -1e-20, 0.5, -0.5, 1.0, -1.0, 3.4028235e38, -3.4028235e38,
    -0.99999994, -0.9999999, -0.70710677, -0.29289323, 0.41421357, 5.9604645e-08, -5.9604645e-08,
    2.9802322e-08, -2.9802322e-08, 1.0000001, -1.0000001, -2.0, 1023.9764,
], dtype=np.float32)


def _dense_float32_sample() -> np.ndarray:
    """One float32 bit pattern in 997 (every exponent, both signs, NaNs and subnormals
    included), plus the edges."""
    bits = np.arange(0, 2**32, 997, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([bits.view(np.float32), EDGES])


def _ulp_errors(x: np.ndarray, got: np.ndarray, reference: Callable[..., Any]) -> np.ndarray:
    """|got - f(x)| in units of the float32 spacing at f(x), f computed in float64; results that
    float32 cannot hold (beyond FLT_MAX) count as exact when got is inf of the right sign."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        exact = reference(x.astype(np.float64))
        rounded = exact.astype(np.float32)
    finite = np.isfinite(rounded)
    err = np.zeros(x.shape)
    spacing = np.spacing(np.abs(rounded[finite])).astype(np.float64)
    err[finite] = np.abs(got[finite].astype(np.float64) - exact[finite]) / spacing
    overflow = ~finite & ~np.isnan(exact)
    err[overflow] = np.where(got[overflow] == rounded[overflow], 0.0, np.inf)
    return err


@pytest.mark.parametrize("name", sorted(KERNEL_FUNCTIONS))
def test_float32_within_2_ulp_over_a_dense_sample_of_all_floats(name: str) -> None:
    apply, reference = KERNEL_FUNCTIONS[name]
    x = _dense_float32_sample()
    got = np.empty_like(x)
    apply(x, got)
    assert got.dtype == np.float32
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        nan = np.isnan(reference(x.astype(np.float64)))  # NaN in, and log1p below -1
    assert np.isnan(got[nan]).all(), f"{name} must be NaN at {x[nan & ~np.isnan(got)][:3]}"
    err = _ulp_errors(x[~nan], got[~nan], reference)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP, f"{name}({x[~nan][worst]!r}) off by {err[worst]:.2f} ulp"


@pytest.mark.parametrize("name", sorted(KERNEL_FUNCTIONS))
def test_float32_edges_exactly(name: str) -> None:
    """+-0 keep their sign (tanh) or give 1 (exp); +-inf give the limits; NaN stays NaN."""
    apply, _ = KERNEL_FUNCTIONS[name]
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -200.0, 200.0], dtype=np.float32)
    got = np.empty_like(x)
    apply(x, got)
    expected = {
        "exp": [1, 1, np.inf, 0, np.nan, 0, np.inf],
        "tanh": [0.0, -0.0, 1, -1, np.nan, -1, 1],
        "log1p": [0.0, -0.0, np.inf, np.nan, np.nan, np.nan, np.log1p(200.0)],
    }[name]
    expected = np.array(expected, dtype=np.float32)
    if name == "log1p":  # and -1 -> -inf
        minus_one = np.empty(1, np.float32)
        apply(np.array([-1.0], np.float32), minus_one)
        assert minus_one[0] == -np.inf
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.signbit(got[:2]), np.signbit(expected[:2]))


def test_exp_subnormal_results_and_overflow_threshold() -> None:
    """exp rounds once into the subnormals (2**k built as two normal factors) and overflows
    exactly where float32 does."""
    x = np.linspace(-103.98, -87.0, 20001, dtype=np.float32)  # results subnormal to normal
    x = np.concatenate([x, np.linspace(88.70, 88.73, 2001, dtype=np.float32)])
    got = np.empty_like(x)
    _apply_exp(x, got)
    assert _ulp_errors(x, got, np.exp).max() <= MAX_ULP
    with np.errstate(over="ignore"):
        overflows = np.exp(x.astype(np.float64)).astype(np.float32) == np.inf
    np.testing.assert_array_equal(got == np.inf, overflows)


@given(st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True))
def test_float32_within_2_ulp_anywhere(v: float) -> None:
    x = np.array([v], dtype=np.float32)
    for name, (apply, reference) in KERNEL_FUNCTIONS.items():
        got = np.empty_like(x)
        apply(x, got)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            undefined = np.isnan(reference(x.astype(np.float64)))[0]  # NaN, log1p below -1
        if undefined:
            assert np.isnan(got[0]), (name, v, got[0])
        else:
            assert _ulp_errors(x, got, reference)[0] <= MAX_ULP, (name, v, got[0])


@pytest.mark.parametrize("name", sorted(KERNEL_FUNCTIONS))
def test_float64_is_numpys(name: str) -> None:
    """float64 (the gradient-check dtype) goes to libm: NumPy's own float64 function."""
    apply, reference = KERNEL_FUNCTIONS[name]
    x = np.concatenate([np.random.default_rng(0).standard_normal(1000) * 30,
                        EDGES.astype(np.float64)])
    got = np.empty_like(x)
    apply(x, got)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(got, reference(x), rtol=1e-15, atol=0)
