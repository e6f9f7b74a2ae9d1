"""The CPU multi-tensor Adam/AdamW kernels (`adam_multi_step`, `adamw_multi_step`): one pass
over a whole parameter group equals the single-tensor kernels bit for bit and the references
within rounding, over hypothesis-drawn lists of shapes (size 0 and 1 included), both float
dtypes and per-tensor step counts; what they do not take (strided params, mixed dtypes) goes to
the reference; their address cache follows arrays that were replaced; and Adam/AdamW.step()
with kernels equals it without.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

import tinygrad_lab as tl  # noqa: E402
from tinygrad_lab import optim  # noqa: E402
from tinygrad_lab.backends import REFERENCES, get_backend  # noqa: E402
from tinygrad_lab.kernels import optim as kernels  # noqa: E402

MULTI = {"adam_multi_step": kernels.adam_step, "adamw_multi_step": kernels.adamw_step}
HYPER = (1e-2, 0.9, 0.99, 1e-8)  # lr, beta1, beta2, eps


def _group(rng: np.random.Generator, shapes: list[tuple[int, ...]], dtype: Any) -> list[list[Any]]:
    """[params, grads, ms, vs] for the shapes."""
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(2)] + [
        [np.abs(rng.standard_normal(s)).astype(dtype) * f for s in shapes] for f in (0.1, 0.01)]


def _copy(group: list[list[Any]]) -> list[list[Any]]:
    return [[a.copy() for a in arrays] for arrays in group]


@contextmanager
def _min_tensors(n: int) -> Iterator[None]:
    """Groups of at least n tensors take the address-table pass (1: every group does)."""
    saved = kernels.MULTI_MIN_TENSORS
    kernels.MULTI_MIN_TENSORS = n
    try:
        yield
    finally:
        kernels.MULTI_MIN_TENSORS = saved


shape_lists = st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=2).map(tuple),
                       min_size=1, max_size=6)


@pytest.mark.parametrize("name", sorted(MULTI))
@settings(max_examples=25)
@given(shapes=shape_lists, dtype=st.sampled_from([np.float32, np.float64]),
       decay=st.sampled_from([0.0, 0.1]), seed=st.integers(0, 2**16),
       table=st.booleans())
def test_multi_step_equals_single_tensor_kernel(name: str, shapes: list[tuple[int, ...]],
                                                dtype: Any, decay: float, seed: int,
                                                table: bool) -> None:
    with _min_tensors(1 if table else 100):
        _check_against_single_tensor_kernel(name, shapes, dtype, decay, seed)


def _check_against_single_tensor_kernel(name: str, shapes: list[tuple[int, ...]], dtype: Any,
                                        decay: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    multi = _group(rng, shapes, dtype)
    single = _copy(multi)
    reference = _copy(multi)
    counts = [int(c) for c in rng.integers(1, 5, len(shapes))]
    for step in range(3):
        steps = [c + step for c in counts]
        assert getattr(kernels, name)(*multi, *HYPER, decay, steps) is None
        REFERENCES[name](*reference, *HYPER, decay, steps)
        for k, t in enumerate(steps):
            MULTI[name](*(arrays[k] for arrays in single), *HYPER, decay, t)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    for got, same, ref in zip(multi, single, reference):
        for g, s, r in zip(got, same, ref):
            np.testing.assert_array_equal(g, s)
            np.testing.assert_allclose(g, r, **tol)


@pytest.mark.parametrize("name", sorted(MULTI))
def test_multi_step_large_group_runs_the_parallel_branch(name: str) -> None:
    rng = np.random.default_rng(0)
    shapes = [(300_000,), (7,), (70_000,), (1,)]  # chunks of several tensors, sizes unaligned
    multi = _group(rng, shapes, np.float32)
    single = _copy(multi)
    with _min_tensors(1):
        getattr(kernels, name)(*multi, *HYPER, 0.1, 3)
    for k in range(len(shapes)):
        MULTI[name](*(arrays[k] for arrays in single), *HYPER, 0.1, 3)
    for got, same in zip(multi, single):
        for g, s in zip(got, same):
            np.testing.assert_array_equal(g, s)


def test_multi_step_leaves_what_it_cannot_take_to_the_reference() -> None:
    rng = np.random.default_rng(0)
    params, grads, ms, vs = _group(rng, [(4, 6), (5,)], np.float32)
    strided = [params[0][:, ::2], params[1]]  # a view: updated in place by the reference only
    ms[0], vs[0] = ms[0][:, :3].copy(), vs[0][:, :3].copy()
    grads[0] = grads[0][:, :3].copy()
    mixed = [params[0], params[1].astype(np.float64)]
    for n in (1, 100):
        with _min_tensors(n):
            assert kernels.adam_multi_step(strided, grads, ms, vs, *HYPER, 0.0, 1) is \
                NotImplemented
            assert kernels.adam_multi_step(mixed, grads, ms, vs, *HYPER, 0.0, 1) is \
                NotImplemented
    expected = params[0].copy()
    view = expected[:, ::2]
    REFERENCES["adam_multi_step"]([view], grads[:1], [ms[0].copy()], [vs[0].copy()], *HYPER,
                                  0.0, 1)
    with tl.use_kernels():
        call = get_backend("cpu").resolve("adam_multi_step")
    call(strided[:1], grads[:1], ms[:1], vs[:1], *HYPER, 0.0, 1)
    np.testing.assert_allclose(params[0], expected, rtol=1e-6)


def test_multi_step_follows_replaced_arrays() -> None:
    """The address cache is keyed by the arrays themselves: a param array replaced (a load, a
    move) is updated, not the address of the one it replaced."""
    rng = np.random.default_rng(0)
    group = _group(rng, [(8,), (3,)], np.float32)
    with _min_tensors(1):
        kernels.adam_multi_step(*group, *HYPER, 0.0, 1)
        old = group[0][0]
        before = old.copy()
        group[0] = [old.copy() + 1, group[0][1]]
        expected = _copy(group)
        kernels.adam_multi_step(*group, *HYPER, 0.0, 2)
    kernels.adam_step(*(a[0] for a in expected), *HYPER, 0.0, 2)
    np.testing.assert_array_equal(group[0][0], expected[0][0])
    np.testing.assert_array_equal(old, before)  # the replaced array is left alone


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
def test_optimizer_step_same_with_and_without_kernels(cls: type) -> None:
    rng = np.random.default_rng(0)
    shapes = [(6, 4), (4,), (1,), (0, 3), (300, 1000)] + [(5,)] * 18  # groups of 2 and 21

    def run(kernels_on: bool) -> list[np.ndarray]:
        params = [tl.nn.Parameter(rng_copy.astype(np.float32)) for rng_copy in start]
        opt = cls([{"params": params[:2], "weight_decay": 0.05}, {"params": params[2:]}],
                  lr=1e-2)
        with tl.use_kernels() if kernels_on else tl.reference():
            for g in grads:
                for p, gi in zip(params, g):
                    p.grad = tl.Tensor(gi)
                opt.step()
        return [p.data for p in params]

    start = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    with tl.use_kernels():
        assert get_backend("cpu").is_kernel("adamw_multi_step")
    assert len(shapes) - 2 >= kernels.MULTI_MIN_TENSORS  # the second group takes the table
    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- sum_of_squares: the squared global norm that clip_grad_norm_ takes -------------------------
@settings(max_examples=30)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=8),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_sum_of_squares_matches_the_reference(sizes, dtype, seed):
    rng = np.random.default_rng(seed)
    arrays = [(rng.standard_normal(n) * rng.uniform(0.01, 100)).astype(dtype) for n in sizes]
    got = kernels.sum_of_squares(arrays)
    want = REFERENCES["sum_of_squares"](arrays)
    assert got.dtype == np.float64 and got.shape == ()
    np.testing.assert_allclose(got, want, rtol=1e-12)  # float64 sums in another order


def test_sum_of_squares_large_non_finite_and_what_it_declines():
    rng = np.random.default_rng(0)
    big = [rng.standard_normal(n).astype(np.float32) for n in (300_000, 5, 1 << 17)]
    np.testing.assert_allclose(kernels.sum_of_squares(big), REFERENCES["sum_of_squares"](big),
                               rtol=1e-12)
    strided = rng.standard_normal((4, 6))[:, ::2]
    assert kernels.sum_of_squares([strided]) is NotImplemented
    assert kernels.sum_of_squares([big[1], big[1].astype(np.float64)]) is NotImplemented
    assert kernels.sum_of_squares([np.arange(3)]) is NotImplemented  # integers
    for bad, want in ((np.nan, np.isnan), (np.inf, np.isinf)):  # reassociation keeps them
        x = np.ones(1000, np.float32)
        x[517] = bad
        assert want(kernels.sum_of_squares([big[1], x]))


@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipping, and nothing to clip
def test_clip_grad_norm_with_kernels_equals_the_reference_and_scales_in_place(max_norm):
    rng = np.random.default_rng(1)

    def clipped(kernels_on: bool) -> tuple[float, list[np.ndarray], bool]:
        params = [tl.Tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
                  for s in ((40, 30), (30,), (7,))]
        grads = [np.random.default_rng(i).standard_normal(p.shape).astype(np.float32)
                 for i, p in enumerate(params)]
        for p, g in zip(params, grads):
            p.grad = tl.Tensor(g)
        arrays = [p.grad.data for p in params]
        with tl.use_kernels() if kernels_on else tl.reference():
            norm = optim.clip_grad_norm_(params, max_norm).item()
        same = all(p.grad.data is a for p, a in zip(params, arrays))  # torch's mul_: in place
        return norm, [p.grad.numpy() for p in params], same

    (n1, g1, same1), (n2, g2, same2) = clipped(True), clipped(False)
    assert same1 and same2
    np.testing.assert_allclose(n1, n2, rtol=1e-6)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)
    if max_norm > n1:  # a factor of exactly 1: every bit as it was
        for i, a in enumerate(g1):
            want = np.random.default_rng(i).standard_normal(a.shape).astype(np.float32)
            np.testing.assert_array_equal(a, want)
