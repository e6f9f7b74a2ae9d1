"""The testing kit itself: gradcheck must catch wrong gradients, strategies must keep promises."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_lab import Tensor
from tinygrad_lab.function import Function
from tinygrad_lab.testing import (
    ForwardCheckError,
    GradcheckError,
    check_forward,
    gradcheck,
)
from tinygrad_lab.testing import strategies as tst


class SquareOffByOne(Function):
    """y = a**2 with a backward that is wrong at one flat element."""

    element: int

    def forward(self, a: np.ndarray) -> np.ndarray:
        self.save(a)
        return a * a

    def backward(self, g: np.ndarray) -> tuple[np.ndarray]:
        (a,) = self.saved
        grad = 2 * a * g
        grad.flat[self.element] += 0.5 * g.flat[self.element]
        return (grad,)


def _bad_square(element: int = 1) -> Callable[[Tensor], Tensor]:
    return lambda a: SquareOffByOne.apply(a, element=element)


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# --- gradcheck ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shapes", [[(3, 4), (4,)], [(2, 30, 20), (20,)], [(700,), (700,)]], ids=str
)
def test_gradcheck_passes_correct_gradients(shapes: list) -> None:
    inputs = [_randn(*s, seed=i) for i, s in enumerate(shapes)]
    assert gradcheck(lambda a, b: (a * b).tanh() + a.exp(), *inputs)


@pytest.mark.parametrize(
    ("shape", "reduce"),
    [((3, 4), False), ((10, 20), False), ((900,), True), ((900,), False)],
    ids=[
        "full Jacobian, per element",
        "weighted sum, per element",
        "full Jacobian, random directions",
        "weighted sum, random directions",
    ],
)
def test_gradcheck_catches_a_wrong_gradient(shape: tuple, reduce: bool) -> None:
    bad = _bad_square(element=5)
    fn = (lambda a: bad(a).sum()) if reduce else bad
    with pytest.raises(GradcheckError):
        gradcheck(fn, _randn(*shape))


def test_gradcheck_message_names_worst_element_and_shapes() -> None:
    x, y = _randn(4), _randn(2, 3, seed=1)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda a, b: _bad_square(element=4)(b) + a.sum(), x, y)
    message = str(info.value)
    assert "input 1" in message and "(1, 1)" in message  # flat element 4 of a (2, 3) array
    assert "analytic" in message and "numeric" in message
    assert "(4,)" in message and "(2, 3)" in message
    assert "abs error" in message and "rel error" in message


def test_gradcheck_without_raising_returns_false() -> None:
    assert gradcheck(_bad_square(), _randn(3), raise_exception=False) is False
    assert gradcheck(lambda a: a * a, _randn(3), raise_exception=False) is True


def test_gradcheck_passes_non_float_inputs_through() -> None:
    labels = np.array([2, 0, 1, 2])
    mask = np.array([True, False, True, False])
    seen = []

    def fn(logits: Tensor, labels_: np.ndarray, mask_: np.ndarray, scale: float) -> Tensor:
        seen.append((labels_, mask_, scale))
        picked = logits.log_softmax()[np.arange(4), labels_]
        return (picked * Tensor(mask_.astype(np.float64)) * scale).sum()

    assert gradcheck(fn, _randn(4, 3), labels, mask, 2.0)
    assert all(a is labels and b is mask and c == 2.0 for a, b, c in seen)


def test_gradcheck_runs_float32_inputs_in_float64() -> None:
    dtypes = []

    def fn(a: Tensor) -> Tensor:
        dtypes.append(a.dtype)
        return a.tanh()

    assert gradcheck(fn, _randn(5).astype(np.float32))
    assert gradcheck(fn, Tensor(_randn(5).astype(np.float32)))
    assert set(dtypes) == {np.dtype(np.float64)}


def test_gradcheck_refuses_a_float32_output() -> None:
    with pytest.raises(TypeError, match="float32"):
        gradcheck(lambda a: a.astype(np.float32), _randn(3))


def test_gradcheck_needs_a_float_input() -> None:
    with pytest.raises(ValueError, match="no floating-point input"):
        gradcheck(lambda a: Tensor(np.ones(3)), np.arange(3))


def test_gradcheck_flags_a_graph_cut_by_detach() -> None:
    with pytest.raises(GradcheckError):
        gradcheck(lambda a: a.detach() * a, _randn(3))


# --- check_forward -------------------------------------------------------------------------------
def test_check_forward() -> None:
    x = _randn(3, 2)
    assert check_forward(lambda a: a.tanh(), np.tanh, x)
    with pytest.raises(ForwardCheckError, match="reference"):
        check_forward(lambda a: a.tanh(), np.sinh, x)
    with pytest.raises(ForwardCheckError, match="shape"):
        check_forward(lambda a: a.sum(axis=0), lambda a: a.sum(axis=0, keepdims=True), x)
    with pytest.raises(ForwardCheckError, match="dtype"):
        check_forward(lambda a: a.astype(np.float32), lambda a: a, x)


# --- strategies ----------------------------------------------------------------------------------
@given(x=tst.shapes().flatmap(lambda s: tst.arrays(s, low=-2.0, high=1.5)))
def test_arrays_are_finite_bounded_and_normal(x: np.ndarray) -> None:
    assert x.dtype == np.float64
    assert np.all(np.isfinite(x)) and np.all((x >= -2.0) & (x <= 1.5))
    tiny = np.finfo(np.float64).tiny
    assert not np.any((x != 0) & (np.abs(x) < tiny))


@given(x=tst.shapes().flatmap(lambda s: tst.arrays(s, np.float32, low=0.2, high=3.0)))
def test_float32_arrays_stay_within_bounds(x: np.ndarray) -> None:
    assert x.dtype == np.float32 and np.all((x >= 0.2) & (x <= 3.0))


@given(x=tst.shapes().flatmap(tst.positive_arrays))
def test_positive_arrays(x: np.ndarray) -> None:
    assert np.all(x > 0)


@given(x=tst.shapes().flatmap(tst.arrays).map(tst.away_from([-1.0, 0.0, 2.0], margin=0.1)))
def test_away_from_keeps_the_margin(x: np.ndarray) -> None:
    for kink in (-1.0, 0.0, 2.0):
        assert np.all(np.abs(x - kink) >= 0.1 - 1e-12)


def test_away_from_rejects_crowded_kinks() -> None:
    with pytest.raises(ValueError, match="closer"):
        tst.away_from([0.0, 0.01], margin=0.1)


@given(data=st.data(), shapes=tst.broadcastable_shapes(3))
def test_separated_arrays_have_no_ties(data: st.DataObject, shapes: tuple) -> None:
    arrays = data.draw(tst.separated_arrays(*shapes, gap=0.05))
    assert [a.shape for a in arrays] == list(shapes)
    values = np.sort(np.concatenate([a.ravel() for a in arrays]))
    assert np.all(np.diff(values) >= 0.05 - 1e-12)
    np.broadcast_shapes(*shapes)


@given(data=st.data(), shape=tst.shapes())
def test_axes_are_valid_numpy_axes(data: st.DataObject, shape: tuple) -> None:
    axis = data.draw(tst.axes(len(shape)))
    if isinstance(axis, tuple):
        normalised = [a % len(shape) for a in axis] if shape else list(axis)
        assert len(set(normalised)) == len(axis)
    np.sum(np.zeros(shape), axis=axis)  # NumPy accepts it


@given(ab=tst.matmul_shapes())
def test_matmul_shapes_are_valid(ab: tuple) -> None:
    np.matmul(np.zeros(ab[0]), np.zeros(ab[1]))
