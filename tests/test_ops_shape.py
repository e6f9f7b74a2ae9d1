"""Semantics of the reduction, movement and indexing ops beyond their OpSpec rows: torch's
answers on integers, booleans, 0-d tensors, zeros and ties; bad arguments raising; the
namedtuple forms; and the cases an OpSpec row cannot draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import Tensor
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing.gradcheck import gradcheck

# --- min is a real op; minimum a real binary op --------------------------------------------------


@pytest.mark.parametrize("values, dtype", [
    ([0, 128, 255, 64, 32, 16], np.uint8),
    ([0, -2**31, 5], np.int32),
    ([7, -2**63, 1], np.int64),
    ([True, False, True], np.bool_),
    ([3.5, -1.0, 2.0], np.float32),
])
def test_min_and_max_match_torch_on_every_dtype(values: list, dtype: type) -> None:
    a = np.array(values, dtype=dtype)
    t = torch.as_tensor(a)
    assert Tensor(a).min().item() == t.min().item()
    assert Tensor(a).max().item() == t.max().item()
    assert Tensor(a).min().dtype == dtype
    other = np.roll(a, 1)
    np.testing.assert_array_equal(Tensor(a).minimum(Tensor(other)).numpy(),
                                  torch.minimum(t, torch.as_tensor(other)).numpy())


def test_min_gradient_splits_ties_and_minimum_picks_the_smaller() -> None:
    x = Tensor([1.0, 0.5, 0.5, 2.0], requires_grad=True)
    x.min().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0.5, 0.5, 0])
    a, b = Tensor([1.0, 2.0, 3.0], requires_grad=True), Tensor([2.0, 2.0, 1.0], requires_grad=True)
    a.minimum(b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [1, 0.5, 0])
    np.testing.assert_allclose(b.grad.numpy(), [0, 0.5, 1])


# --- axes out of range raise; 0-d tensors follow torch -------------------------------------------


@pytest.mark.parametrize("call", [
    lambda x: x.squeeze(3), lambda x: x.squeeze(-4), lambda x: x.unsqueeze(4),
    lambda x: x.unsqueeze(-5), lambda x: x.flatten(3), lambda x: x.flatten(0, 5),
    lambda x: x.flatten(2, 1), lambda x: x.sum(dim=3), lambda x: x.sum((0, 0)),
    lambda x: x.argmax(dim=3), lambda x: x.cumsum(3), lambda x: x.swapaxes(0, 3),
])
def test_out_of_range_axes_raise(call) -> None:
    with pytest.raises(ValueError):
        call(Tensor(np.zeros((2, 1, 3))))


def test_zero_d_tensors_reduce_squeeze_and_softmax_as_torch() -> None:
    x = Tensor(3.0, requires_grad=True)
    t = torch.tensor(3.0)
    for dim in (0, -1):
        assert x.squeeze(dim).shape == tuple(t.squeeze(dim).shape) == ()
        assert x.sum(axis=dim).item() == 3.0 and x.sum(dim=dim, keepdim=True).shape == ()
        assert x.max(axis=dim).item() == 3.0 and x.mean(dim=dim).item() == 3.0
        assert x.softmax(dim).item() == torch.softmax(t, dim).item() == 1.0
        assert x.log_softmax(dim).item() == torch.log_softmax(t, dim).item() == 0.0
        assert x.unsqueeze(dim).shape == (1,)
        assert x.flatten().shape == tuple(t.flatten().shape) == (1,)
        assert x.argmax(dim=dim).item() == 0 and x.cumsum(dim).item() == 3.0
    with pytest.raises(ValueError):
        x.squeeze(1)
    with pytest.raises(ValueError):
        x.softmax(1)
    x.softmax(0).backward()
    assert x.grad.item() == 0.0


def test_flatten_takes_start_and_end_dim() -> None:
    x = Tensor(np.zeros((2, 3, 4, 5)))
    t = torch.zeros(2, 3, 4, 5)
    for start, end in [(0, -1), (1, 2), (-3, -2), (2, 2), (0, 0)]:
        assert x.flatten(start, end).shape == tuple(t.flatten(start, end).shape)
    assert Tensor(np.zeros((2, 0, 3))).flatten(1).shape == (2, 0)


# --- indexing: integers are applied before index arrays, as torch ---------------------------------


@pytest.mark.parametrize("index", [
    (0, slice(None), [0, 2]), (slice(None), 1, [0, 3, 3]), ([1, 0], slice(None), 2),
    (0, [1, 2], [0, 3]), (Ellipsis, 1, [0, 1]), (1, None, slice(None), [2]),
    ([0, 1], 0, [1, 2]), (0, slice(1, 3), [True, False, True, False]),
    (np.array(1), slice(None), [0, 2]),  # a 0-d integer array counts as an integer
])
def test_integer_and_array_index_follows_torch(index: tuple) -> None:
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    x = Tensor(a, requires_grad=True)
    ta = torch.tensor(a, requires_grad=True)
    tindex = tuple(torch.tensor(i) if isinstance(i, (list, np.ndarray)) else i for i in index)
    out, tout = x[index], ta[tindex]
    assert out.shape == tuple(tout.shape)
    np.testing.assert_array_equal(out.numpy(), tout.detach().numpy())
    seed = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(seed)
    tout.backward(torch.tensor(seed))
    np.testing.assert_allclose(x.grad.numpy(), ta.grad.numpy())


# --- pad ----------------------------------------------------------------------------------------


def test_pad_refuses_a_spec_with_fewer_pairs_than_dimensions() -> None:
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="pairs"):
        x.pad([(1, 1)])
    with pytest.raises(ValueError, match="mode"):
        x.pad([(1, 1), (0, 0)], mode="wrap")
    with pytest.raises(ValueError, match="reflect"):
        x.pad([(0, 0), (3, 0)], mode="reflect")
    with pytest.raises(ValueError, match="even"):
        F.pad(x, (1, 2, 3))
    assert F.pad(x, (1, 2)).shape == (2, 6) and F.pad(x, (0, 0, 1, 0)).shape == (3, 3)


# --- reductions: torch forms and edge values ------------------------------------------------------


def test_max_and_min_with_dim_return_values_and_indices() -> None:
    a = np.array([[1.0, 5.0, 5.0], [4.0, -2.0, 0.0]])
    for name in ("max", "min"):
        for keepdim in (False, True):
            x = Tensor(a, requires_grad=True)
            ta = torch.tensor(a, requires_grad=True)
            out = getattr(x, name)(dim=1, keepdim=keepdim)
            tout = getattr(ta, name)(dim=1, keepdim=keepdim)
            assert isinstance(out, tuple) and out._fields == ("values", "indices")
            np.testing.assert_array_equal(out.indices.numpy(), tout.indices.numpy())
            assert out.indices.dtype == np.int64
            out.values.sum().backward()
            tout.values.sum().backward()
            np.testing.assert_array_equal(x.grad.numpy(), ta.grad.numpy())  # one index gets it
    assert Tensor(a).max(1).shape == (2,)  # the house form: values only
    np.testing.assert_array_equal(Tensor(a).max(Tensor(a[::-1].copy())).numpy(),
                                  np.maximum(a, a[::-1]))


@pytest.mark.parametrize("fn", ["argmax", "argmin"])
def test_argmax_argmin_keepdim_match_torch(fn: str) -> None:
    a = np.array([[[1.0, 3.0], [3.0, 0.0]], [[2.0, 2.0], [-1.0, 5.0]]])
    for dim in (None, 0, 1, -1):
        for keepdim in (False, True):
            got = getattr(Tensor(a), fn)(dim=dim, keepdim=keepdim)
            want = getattr(torch.tensor(a), fn)(dim=dim, keepdim=keepdim)
            assert got.shape == tuple(want.shape)
            np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_prod_and_cumprod_gradients_are_exact_with_zeros() -> None:
    a = np.array([[0.0, 2.0, 3.0, 0.0], [1.5, 0.0, -2.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    for op in ("prod", "cumprod"):
        x = Tensor(a, requires_grad=True)
        ta = torch.tensor(a, requires_grad=True)
        out = x.prod(dim=1) if op == "prod" else x.cumprod(1)
        tout = ta.prod(dim=1) if op == "prod" else ta.cumprod(1)
        seed = np.arange(1.0, 1.0 + out.size).reshape(out.shape)
        out.backward(seed)
        tout.backward(torch.tensor(seed))
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy())
        np.testing.assert_allclose(x.grad.numpy(), ta.grad.numpy())
    assert gradcheck(lambda t: t.prod(axis=(0, 1)), a)


def test_all_any_logsumexp_and_std_mean() -> None:
    a = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    t = torch.tensor(a)
    for dim in (None, 0, 1):
        for keepdim in (False, True):
            for fn in ("all", "any"):
                want = getattr(t, fn)() if dim is None else getattr(t, fn)(dim, keepdim)
                got = getattr(Tensor(a), fn)(dim=dim, keepdim=keepdim if dim is not None else
                                             False)
                assert got.dtype == np.bool_
                np.testing.assert_array_equal(got.numpy(), want.numpy())
    inf = Tensor(np.array([-np.inf, -np.inf]))
    assert inf.logsumexp().item() == torch.tensor([-np.inf, -np.inf]).logsumexp(0).item()
    big = np.array([1000.0, 1000.0])
    np.testing.assert_allclose(Tensor(big).logsumexp().item(), 1000.0 + np.log(2))
    std, mean = Tensor(a).std_mean(dim=1, ddof=1)
    tstd, tmean = torch.std_mean(t, dim=1)
    np.testing.assert_allclose(std.numpy(), tstd.numpy())
    np.testing.assert_allclose(mean.numpy(), tmean.numpy())
    var, mean = Tensor(a).var_mean(0, True)  # torch's default correction=1
    np.testing.assert_allclose(var.numpy(), torch.var_mean(t, 0, keepdim=True)[0].numpy())
    assert mean.shape == (1, 3)


def test_dim_and_axis_together_raise() -> None:
    with pytest.raises(TypeError):
        Tensor(np.zeros((2, 2))).sum(0, dim=1)
    with pytest.raises(TypeError):
        Tensor(np.zeros((2, 2))).max(0, dim=1)


def test_norm_gradient_is_zero_at_the_zero_vector_as_torch() -> None:
    x = Tensor(np.zeros(3), requires_grad=True)
    x.norm().backward()
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    t.norm().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())
    with pytest.raises(ValueError):
        x.norm("nuc")


# --- sort, topk, nonzero: indices ---------------------------------------------------------------


@settings(max_examples=25)
@given(st.lists(st.integers(-2, 2), min_size=0, max_size=8), st.booleans())
def test_sort_and_argsort_are_stable_as_torch_stable(values: list, descending: bool) -> None:
    a = np.array(values, dtype=np.float64)
    got = Tensor(a).sort(descending=descending)
    want = torch.sort(torch.tensor(a), descending=descending, stable=True)
    np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
    np.testing.assert_array_equal(Tensor(a).argsort(descending=descending).numpy(),
                                  want.indices.numpy())


def test_topk_indices_and_nonzero_match_torch() -> None:
    a = np.array([[3.0, 1.0, 4.0, 1.5], [-1.0, 5.0, 9.0, 2.0]])
    for largest in (True, False):
        got = Tensor(a).topk(2, dim=1, largest=largest)
        want = torch.tensor(a).topk(2, dim=1, largest=largest)
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
    m = np.array([[0, 1, 0], [2, 0, 3]])
    np.testing.assert_array_equal(Tensor(m).nonzero().numpy(), torch.tensor(m).nonzero().numpy())
    for got, want in zip(tl.nonzero(Tensor(m), as_tuple=True),
                         torch.tensor(m).nonzero(as_tuple=True)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert Tensor(m).nonzero().dtype == np.int64
    with pytest.raises(ValueError):
        Tensor(a).topk(5)


# --- scatter family: the cases the table cannot draw ----------------------------------------------


def test_scatter_reduce_prod_gradient_is_exact_with_zeros() -> None:
    x = np.array([2.0, 0.0, 3.0, 1.0])
    src = np.array([0.0, 5.0, 2.0, 0.0, 4.0])
    index = np.array([0, 0, 1, 2, 3])
    for include_self in (True, False):
        a, s = Tensor(x, requires_grad=True), Tensor(src, requires_grad=True)
        ta, ts = torch.tensor(x, requires_grad=True), torch.tensor(src, requires_grad=True)
        out = a.scatter_reduce(0, index, s, "prod", include_self)
        tout = ta.scatter_reduce(0, torch.tensor(index), ts, "prod", include_self=include_self)
        seed = np.array([1.0, 2.0, 3.0, 4.0])
        out.backward(seed)
        tout.backward(torch.tensor(seed))
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy())
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy())
        np.testing.assert_allclose(s.grad.numpy(), ts.grad.numpy())


def test_scatter_reads_only_the_index_shaped_corner_of_a_larger_src() -> None:
    x = np.zeros((3, 4))
    src = np.random.default_rng(0).standard_normal((3, 5))
    index = np.array([[0, 2], [1, 0]])
    out = Tensor(x).scatter_add(0, index, Tensor(src))
    want = torch.zeros(3, 4, dtype=torch.float64).scatter_add(0, torch.tensor(index),
                                                              torch.tensor(src))
    np.testing.assert_allclose(out.numpy(), want.numpy())
    for reduce in ("sum", "mean", "amax"):
        assert gradcheck(lambda a, s, r=reduce: a.scatter_reduce(1, index, s, r), x + 0.1, src)
    assert gradcheck(lambda a, s: a.scatter(1, index, s), x, src)
    np.testing.assert_array_equal(Tensor(x).scatter(1, index, value=2.0).numpy(),
                                  torch.tensor(x).scatter(1, torch.tensor(index), 2.0).numpy())


def test_gather_and_scatter_check_their_index() -> None:
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(IndexError):
        x.gather(1, np.array([[3]]))
    with pytest.raises(TypeError):
        x.gather(1, np.array([[0.0]]))
    with pytest.raises(ValueError):
        x.gather(1, np.array([0]))
    with pytest.raises(ValueError):
        x.scatter_reduce(0, np.array([[0]]), x, "max")
    with pytest.raises(IndexError):
        x.index_select(0, [2])


@pytest.mark.parametrize("device", ["standin"], indirect=True)
def test_scatter_reduce_rounds_match_numpy_on_a_device_without_ufunc_at(device) -> None:
    """The stand-in, like CuPy, has no ufunc.at: scatter_reduce_at takes its rounds there."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6))
    src = rng.standard_normal((4, 20))
    index = rng.integers(0, 6, size=(4, 20))  # many repeats per place
    for reduce in ("prod", "amax", "amin"):
        want = Tensor(x).scatter_reduce(1, index, Tensor(src), reduce).numpy()
        got = Tensor(x, device="standin").scatter_reduce(
            1, index, Tensor(src, device="standin"), reduce)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


# --- einsum, split, free functions ---------------------------------------------------------------


def test_einsum_errors_and_list_operands() -> None:
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((3, 4)))
    assert tl.einsum("ij,jk->ik", [a, b]).shape == (2, 4)
    with pytest.raises(ValueError):
        tl.einsum("ij,jk->ik", a)
    with pytest.raises(ValueError):
        tl.einsum("ij,jk", a, a)  # j is 3 in one, 2 in the other
    with pytest.raises(ValueError):
        tl.einsum("ijk->i", a)
    with pytest.raises(ValueError):
        tl.einsum("ij->q", a)


def test_split_sizes_must_add_up_and_is_one_node() -> None:
    x = Tensor(np.arange(10.0), requires_grad=True)
    parts = x.split([3, 7])
    assert [p.shape for p in parts] == [(3,), (7,)]
    assert parts[0]._ctx is parts[1]._ctx
    assert [p.shape for p in x.split(4)] == [(4,), (4,), (2,)]
    with pytest.raises(ValueError):
        x.split([3, 3])


def test_free_functions_are_the_methods() -> None:
    x = Tensor(np.arange(6.0).reshape(2, 3))
    t = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    for name, args in [("flip", ((0,),)), ("roll", (1, 1)), ("cumsum", (1,)), ("prod", ()),
                       ("movedim", (0, 1)), ("narrow", (1, 0, 2)), ("logsumexp", (1,)),
                       ("repeat_interleave", (2,)), ("tile", ((2,),))]:
        np.testing.assert_allclose(getattr(tl, name)(x, *args).numpy(),
                                   getattr(torch, name)(t, *args).numpy())


def test_scatter_reduce_on_integers_matches_torch() -> None:
    x = np.arange(6).reshape(2, 3)
    index = np.array([[0, 0], [1, 1]])
    src = np.array([[1, 2], [3, 4]])
    for reduce in ("sum", "prod", "mean", "amax", "amin"):
        for include_self in (True, False):
            got = Tensor(x).scatter_reduce(1, index, Tensor(src), reduce, include_self)
            want = torch.tensor(x).scatter_reduce(1, torch.tensor(index), torch.tensor(src),
                                                  reduce, include_self=include_self)
            np.testing.assert_array_equal(got.numpy(), want.numpy())
            assert got.dtype == np.int64
