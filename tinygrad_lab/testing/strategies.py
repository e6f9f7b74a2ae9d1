"""Hypothesis strategies for op tests: shapes, axes, and well-conditioned float arrays.

Every op test in the project draws its inputs from here, so that a new op test is a few lines:

    >>> @given(x=shapes().flatmap(arrays))
    ... def test_tanh_gradient(x): assert gradcheck(Tensor.tanh, x)

Arrays are dense (every element drawn, not a constant fill with a few changes), finite, free of
subnormals, and bounded, so that float64 central differences are accurate on them. Values that
would sit on a non-differentiable point are moved off it by `away_from`, or, for ties between
values (maximum, max over an axis), drawn apart from the start by `separated_arrays`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

Shape = tuple[int, ...]
Axes = int | tuple[int, ...] | None

__all__ = [
    "Axes",
    "Shape",
    "arrays",
    "away_from",
    "axes",
    "broadcastable_shapes",
    "matmul_shapes",
    "positive_arrays",
    "separated_arrays",
    "shapes",
]


def shapes(
    min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 5
) -> st.SearchStrategy[Shape]:
    """Array shapes with `min_dims..max_dims` axes of `min_side..max_side` each (0-d included).

    >>> shapes(max_dims=2).example()  # e.g. (3, 1)
    """
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcastable_shapes(
    n: int = 2, min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 5
) -> st.SearchStrategy[tuple[Shape, ...]]:
    """Tuples of `n` shapes that broadcast together (NumPy rules), e.g. ((3, 1), (2, 1, 4)).

    Built on hypothesis' `mutually_broadcastable_shapes`; ranks may differ and sides may be 1.
    """
    return hnp.mutually_broadcastable_shapes(
        num_shapes=n, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda drawn: tuple(tuple(s) for s in drawn.input_shapes))


def axes(
    ndim: int, *, allow_none: bool = True, allow_int: bool = True, allow_tuple: bool = True
) -> st.SearchStrategy[Axes]:
    """`axis` arguments for an array of `ndim` dimensions, as NumPy accepts them.

    None (all axes), one int, or a tuple of distinct axes (possibly empty); ints may be negative.
    A 0-d array gets only None or ().
    """
    choices: list[st.SearchStrategy[Axes]] = []
    if allow_none:
        choices.append(st.none())
    if allow_int and ndim > 0:
        choices.append(st.integers(-ndim, ndim - 1))
    if allow_tuple:
        if ndim == 0:
            choices.append(st.just(()))
        else:
            choices.append(
                st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim).flatmap(
                    lambda picked: st.tuples(*[st.sampled_from((a, a - ndim)) for a in picked])
                )
            )
    if not choices:
        raise ValueError(f"axes: nothing to draw for ndim={ndim} with these options")
    return st.one_of(*choices)


def _elements(dtype: np.dtype, low: float, high: float) -> st.SearchStrategy[float]:
    if dtype.kind != "f":
        raise TypeError(f"arrays: expected a floating dtype, got {dtype}")
    if not low < high:
        raise ValueError(f"arrays: need low < high, got [{low}, {high}]")
    width = 8 * dtype.itemsize if dtype.itemsize <= 8 else 64
    if width < 64:  # hypothesis wants bounds representable at the width: round inwards
        narrow = np.dtype(f"float{width}").type
        lo, hi = narrow(low), narrow(high)
        low = float(lo if lo >= low else np.nextafter(lo, narrow(np.inf)))
        high = float(hi if hi <= high else np.nextafter(hi, narrow(-np.inf)))
    return st.floats(
        min_value=low,
        max_value=high,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
        width=width,
    )


def arrays(
    shape: Shape | st.SearchStrategy[Shape],
    dtype: Any = np.float64,
    low: float = -3.0,
    high: float = 3.0,
) -> st.SearchStrategy[np.ndarray]:
    """Dense float arrays with finite values in [low, high]: no NaN, inf or subnormals.

    Every element is drawn (no constant fill), so reductions, softmax and gradients see distinct
    values. `shape` is a shape or a strategy of shapes: `shapes().flatmap(arrays)` works too.
    """
    dt = np.dtype(dtype)
    return hnp.arrays(dt, shape, elements=_elements(dt, low, high), fill=st.nothing())


def positive_arrays(
    shape: Shape | st.SearchStrategy[Shape],
    dtype: Any = np.float64,
    low: float = 0.1,
    high: float = 3.0,
) -> st.SearchStrategy[np.ndarray]:
    """`arrays` in [low, high] with low > 0: inputs of log, sqrt, x**p for fractional p."""
    if low <= 0:
        raise ValueError(f"positive_arrays: low must be > 0, got {low}")
    return arrays(shape, dtype, low, high)


def away_from(kinks: Sequence[float], margin: float = 1e-2) -> Callable[[np.ndarray], np.ndarray]:
    """A mapper that moves every element closer than `margin` to a kink out to `kink +- margin`.

    Elements keep their side of the kink, so the sign pattern hypothesis chose survives. Use it on
    the inputs of ops with non-differentiable points: `arrays(s).map(away_from([0.0]))` for relu
    and abs, `away_from([low, high])` for clip. The margin only has to exceed gradcheck's `eps`
    by a wide factor; kinks must be at least `2 * margin` apart. Results may exceed the array's
    [low, high] by up to `margin`.
    """
    points = sorted(float(k) for k in kinks)
    if margin <= 0:
        raise ValueError(f"away_from: margin must be > 0, got {margin}")
    if any(b - a < 2 * margin for a, b in zip(points, points[1:])):
        raise ValueError(f"away_from: kinks {points} are closer than 2 * margin = {2 * margin}")

    def push(x: np.ndarray) -> np.ndarray:
        out = np.array(x, copy=True)
        for k in points:
            offset = out - k
            close = np.abs(offset) < margin
            out[close] = k + np.where(offset[close] >= 0, margin, -margin)
        return out

    return push


def separated_arrays(
    *array_shapes: Shape,
    gap: float = 1e-2,
    low: float = -3.0,
    high: float = 3.0,
    dtype: Any = np.float64,
) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    """Arrays of the given shapes whose elements, all together, are pairwise >= `gap` apart.

    For ops whose derivative is undefined at ties: `maximum`/`minimum` of broadcast inputs, and
    `max`/`min` over axes. The values are a random permutation of evenly spaced slots, each
    jittered within its slot; they fill [low, high] when `gap` leaves room, else run past `high`.
    """
    dt = np.dtype(dtype)
    sizes = [int(np.prod(s, dtype=np.int64)) for s in array_shapes]
    total = sum(sizes)
    step = max((high - low) / max(total, 1), 2 * gap)

    def build(drawn: tuple[list[int], np.ndarray]) -> tuple[np.ndarray, ...]:
        order, jitter = drawn
        values = low + (np.asarray(order, dtype=np.float64) + 0.5) * step + jitter * (step - gap)
        out, start = [], 0
        for shape, size in zip(array_shapes, sizes):
            out.append(values[start : start + size].reshape(shape).astype(dt))
            start += size
        return tuple(out)

    jitter = hnp.arrays(
        np.float64,
        (total,),
        elements=st.floats(-0.5, 0.5, allow_subnormal=False),
        fill=st.nothing(),
    )
    return st.tuples(st.permutations(range(total)), jitter).map(build)


@st.composite
def matmul_shapes(
    draw: st.DrawFn, max_batch_dims: int = 2, max_side: int = 4
) -> tuple[Shape, Shape]:
    """Shape pairs for `a @ b`: batched with broadcasting, and the 1-D cases NumPy allows.

    An operand is 1-D with some probability (vector @ matrix, matrix @ vector, vector @ vector);
    otherwise it is (*batch, n, k) @ (*batch', k, m) with batch and batch' broadcastable.
    """
    n, k, m = (draw(st.integers(1, max_side)) for _ in range(3))
    batch_a, batch_b = draw(broadcastable_shapes(2, max_dims=max_batch_dims, max_side=3))
    a_vector, b_vector = draw(st.booleans()), draw(st.booleans())
    shape_a = (k,) if a_vector else (*batch_a, n, k)
    shape_b = (k,) if b_vector else (*batch_b, k, m)
    return shape_a, shape_b
