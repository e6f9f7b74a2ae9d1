"""PyTorch's semantics where they are easy to get wrong: gradients of pow at 0, reductions over
nothing, var/std's default correction=1, the order of sort's ties, dtype promotion, clip's
bounds, the RoPE table cache, clip_grad_norm_'s arguments, and schedulers stepped together on
one optimizer. Each is compared with torch where torch has it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import nn, optim, schedulers
from tinygrad_lab.nn import functional as F


def _grad_pair(fn, *values):
    """fn's gradients on float64 inputs: ours and torch's."""
    ours = [tl.Tensor(np.asarray(v, np.float64), requires_grad=True) for v in values]
    fn(*ours).sum().backward()
    theirs = [torch.tensor(np.asarray(v, np.float64), requires_grad=True) for v in values]
    fn(*theirs).sum().backward()
    return [t.grad.numpy() for t in ours], [t.grad.numpy() for t in theirs]


# --- pow at 0 ---------------------------------------------------------------------------------
def test_pow_of_zero_base_has_zero_gradient_in_the_exponent():
    ours, theirs = _grad_pair(lambda x: 0.0 ** x, [0.0, 1.0, 2.0, 3.0, -1.0])
    np.testing.assert_array_equal(ours[0][:4], [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(ours[0], theirs[0])


def test_pow_tensor_tensor_at_zero_matches_torch():
    base, exponent = [0.0, 0.0, 0.0, 2.0, 0.0], [0.0, 1.0, 2.0, 0.0, -1.0]
    ours, theirs = _grad_pair(lambda a, b: a**b, base, exponent)
    np.testing.assert_array_equal(ours[0][:2], [0.0, 1.0])
    np.testing.assert_array_equal(ours[1][:3], [0.0, 0.0, 0.0])
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t)


@pytest.mark.parametrize("p", [0, 0.5, 1, 2, 3, -1, -0.5, 2.5])
def test_pow_scalar_gradient_at_zero_matches_torch_exactly(p):
    ours, theirs = _grad_pair(lambda x: x**p, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-15)  # inf for p = 0.5, as torch


# --- reductions over nothing ------------------------------------------------------------------
def test_mean_over_an_empty_axis_is_nan():
    assert np.isnan(tl.Tensor(np.zeros(0)).mean().item())
    np.testing.assert_array_equal(tl.Tensor(np.zeros((2, 0))).mean(1).numpy(),
                                  torch.zeros(2, 0).mean(1).numpy())


@pytest.mark.parametrize("n,ddof", [(1, 1), (2, 2), (2, 3), (3, 1), (0, 0)])
def test_var_with_ddof_at_least_n_divides_by_zero_as_torch(n, ddof):
    x = np.arange(1.0, n + 1)
    ours = tl.Tensor(x).var(ddof=ddof).item()
    theirs = torch.tensor(x).var(correction=ddof).item()
    np.testing.assert_allclose(ours, theirs)  # inf, nan or a number: the same


# --- var/std: torch's default, correction=1 ----------------------------------------------------
@pytest.mark.parametrize("fn", ["var", "std", "var_mean", "std_mean"])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (0, False), (1, True), ((0, 1), False)])
def test_var_and_std_default_to_torchs_unbiased_estimate(fn, dim, keepdim):
    a = np.random.default_rng(0).normal(size=(3, 4))
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    ours, theirs = getattr(tl, fn)(tl.Tensor(a), **kw), getattr(torch, fn)(torch.tensor(a), **kw)
    for o, t in zip(ours if isinstance(ours, tuple) else (ours,),
                    theirs if isinstance(theirs, tuple) else (theirs,)):
        assert o.shape == tuple(t.shape)
        np.testing.assert_allclose(o.numpy(), t.numpy(), rtol=1e-12)
    assert not np.allclose(tl.Tensor(a).var().item(), a.var())  # not NumPy's ddof=0


@pytest.mark.filterwarnings("ignore:.*degrees of freedom")  # torch's, on purpose here
@pytest.mark.parametrize("fn", ["var", "std"])
@pytest.mark.parametrize("shape,dim", [((1,), None), ((3, 1), 1), ((1, 2), 0), ((2,), None)])
def test_var_of_one_element_is_nan_with_the_default_correction_as_torch(fn, shape, dim):
    # n = 1 = correction divides by 0: nan values (0 / 0), and nan gradients, as torch
    x = np.arange(1.0, 1 + np.prod(shape)).reshape(shape)
    kw = {} if dim is None else {"dim": dim}
    ours = getattr(tl.Tensor(x), fn)(**kw).numpy()
    theirs = getattr(torch.tensor(x), fn)(**kw).numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs)
    ours_g, theirs_g = _grad_pair(lambda t: getattr(t, fn)(**kw), x)
    np.testing.assert_allclose(ours_g[0], theirs_g[0])  # nan where torch's is nan


@pytest.mark.parametrize("ours_kw,torch_kw", [
    ({"correction": 0}, {"correction": 0}), ({"ddof": 0}, {"correction": 0}),
    ({"unbiased": False}, {"unbiased": False}), ({"unbiased": True}, {}),
    ({"ddof": 1}, {}), ({"correction": 0.5}, {"correction": 0.5}),
    ({"correction": 2}, {"correction": 2}), ({"correction": -1}, {"correction": -1}),
])
def test_var_correction_ddof_and_unbiased_spell_the_same_thing_as_torch(ours_kw, torch_kw):
    a = np.random.default_rng(1).normal(size=(2, 5))
    for fn in ("var", "std"):
        ours = getattr(tl.Tensor(a), fn)(dim=1, **ours_kw).numpy()
        theirs = getattr(torch.tensor(a), fn)(dim=1, **torch_kw).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize("kw", [{"correction": 1, "ddof": 1}, {"ddof": 0, "unbiased": False},
                                {"correction": 0, "unbiased": True}, {"unbiased": 1},
                                {"correction": "1"}])
@pytest.mark.parametrize("fn", ["var", "std", "var_mean", "std_mean"])
def test_var_rejects_two_corrections_at_once_or_a_wrong_type(fn, kw):
    with pytest.raises(TypeError, match="correction|unbiased"):
        getattr(tl.Tensor(np.ones(3)), fn)(**kw)


# --- sort(stable=), topk(sorted=) ---------------------------------------------------------------
@settings(max_examples=25)
@given(st.lists(st.integers(-2, 2), min_size=1, max_size=12), st.integers(1, 3), st.booleans(),
       st.booleans())
def test_sort_orders_ties_as_torchs_stable_sort(values, rows, descending, stable):
    # every row the same multiset in another order: ties everywhere, along dim 1 and dim 0
    a = np.array([np.roll(values, r) for r in range(rows)], dtype=np.float64)
    for dim in (1, 0, -1):
        got = tl.Tensor(a).sort(dim, descending=descending, stable=stable)
        want = torch.sort(torch.tensor(a), dim=dim, descending=descending, stable=True)
        np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
        np.testing.assert_array_equal(got.values.numpy(), want.values.numpy())
        np.testing.assert_array_equal(
            tl.Tensor(a).argsort(dim, descending=descending, stable=stable).numpy(),
            want.indices.numpy())


@pytest.mark.parametrize("largest", [True, False])
def test_topk_unsorted_returns_torchs_values_sorted(largest):
    # sorted=False: torch may return any order; ours is sorted, which is one of them
    a = np.random.default_rng(2).permutation(12).astype(np.float64).reshape(3, 4)
    got = tl.Tensor(a).topk(3, dim=1, largest=largest, sorted=False)
    want = torch.topk(torch.tensor(a), 3, dim=1, largest=largest, sorted=False)
    np.testing.assert_array_equal(np.sort(got.values.numpy(), 1), np.sort(want.values.numpy(), 1))
    sorted_ = torch.topk(torch.tensor(a), 3, dim=1, largest=largest, sorted=True)
    np.testing.assert_array_equal(got.values.numpy(), sorted_.values.numpy())
    np.testing.assert_array_equal(got.indices.numpy(), sorted_.indices.numpy())


def test_cross_entropy_mean_over_no_rows_is_nan():
    assert np.isnan(F.cross_entropy(tl.Tensor(np.zeros((0, 4))), np.zeros(0, np.int64)).item())


# --- clip, RoPE, mse, clip_grad_norm_ ---------------------------------------------------------
def test_clip_needs_a_bound():
    with pytest.raises(ValueError, match="at least one"):
        tl.Tensor([1.0, 2.0]).clip()
    np.testing.assert_array_equal(tl.Tensor([1.0, 5.0]).clip(None, 2.0).numpy(), [1.0, 2.0])


def test_rope_cache_tells_position_dtypes_apart():
    rope = nn.RotaryEmbedding(4)
    x1 = tl.Tensor(np.ones((1, 1, 1, 4)))
    x2 = tl.Tensor(np.ones((1, 1, 2, 4)))
    rope(x1, positions=np.array([1], np.int64))
    out = rope(x2, positions=np.array([1, 0], np.int32))  # the same 8 bytes as int64 [1]
    fresh = nn.RotaryEmbedding(4)(x2, positions=np.array([1, 0], np.int32))
    np.testing.assert_array_equal(out.numpy(), fresh.numpy())


def test_mse_loss_gradient_reaches_the_target():
    ours, theirs = _grad_pair(lambda a, b: (F if isinstance(a, tl.Tensor) else
                                            torch.nn.functional).mse_loss(a, b),
                              [1.0, 2.0, 4.0], [0.5, 0.0, 1.0])
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t)


def test_clip_grad_norm_takes_one_tensor_or_an_iterable_like_torch():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3, 4))
    p = tl.Tensor(np.zeros((3, 4)), requires_grad=True)
    p.grad = tl.Tensor(g.copy())
    q = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    q.grad = torch.tensor(g)
    total = optim.clip_grad_norm_(p, 1.0)
    theirs = torch.nn.utils.clip_grad_norm_(q, 1.0)
    np.testing.assert_allclose(total.item(), theirs.item())
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)
    a, b = (tl.Tensor(np.zeros(2), requires_grad=True) for _ in range(2))
    a.grad, b.grad = tl.Tensor(np.array([3.0, 0.0])), tl.Tensor(np.array([0.0, 4.0]))
    assert optim.clip_grad_norm_(iter([a, b]), 10.0).item() == pytest.approx(5.0)


# --- dtype promotion: torch's, not NumPy's -----------------------------------------------------
PROMOTIONS = [
    ("int + 1.5", lambda t: t + 1.5),
    ("1.5 + int", lambda t: 1.5 + t),
    ("int / int", lambda t: t / t),
    ("int / 2", lambda t: t / 2),
    ("2 / int", lambda t: 2 / t),
    ("int ** 0.5", lambda t: t**0.5),
    ("int ** 2", lambda t: t**2),
    ("int + 1", lambda t: t + 1),
    ("int * 3", lambda t: t * 3),
    ("exp(int)", lambda t: t.exp()),
    ("log(int)", lambda t: t.log()),
    ("sqrt(int)", lambda t: t.sqrt()),
    ("tanh(int)", lambda t: t.tanh()),
    ("sigmoid(int)", lambda t: t.sigmoid()),
]
INT_DTYPES = {"int32": (np.int32, torch.int32), "int64": (np.int64, torch.int64)}


@pytest.mark.parametrize("name,fn", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
@pytest.mark.parametrize("dtype", sorted(INT_DTYPES))
def test_integer_promotion_matches_torch(name, fn, dtype):
    ours_dtype, torch_dtype = INT_DTYPES[dtype]
    values = np.array([1, 2, 4])
    ours = fn(tl.Tensor(values.astype(ours_dtype)))
    theirs = fn(torch.tensor(values, dtype=torch_dtype))
    assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("value", [2.5, 3, True, 1e40])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_a_python_scalar_never_widens_the_tensor(value, dtype):
    ours = tl.Tensor(np.array([1, 2], dtype=dtype)) * value
    theirs = torch.tensor([1, 2], dtype=getattr(torch, dtype)) * value
    assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")


def test_tensor_tensor_promotion_matches_torch():
    pairs = [("int32", "float64"), ("int64", "float32"), ("float32", "float64"),
             ("int32", "int64"), ("bool", "int32"), ("bool", "float32")]
    for a, b in pairs:
        x, y = np.array([1, 0], a), np.array([1, 1], b)
        ours = tl.Tensor(x) + tl.Tensor(y)
        theirs = torch.tensor(x) + torch.tensor(y)
        assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch."), (a, b)
    # a 0-d operand of the same category does not widen a dimensioned one
    ours = tl.Tensor(np.ones(2, np.float32)) * tl.Tensor(np.array(2.0))
    theirs = torch.ones(2) * torch.tensor(2.0, dtype=torch.float64)
    assert ours.dtype == np.float32 and theirs.dtype == torch.float32


def test_floating_ops_on_integers_compute_in_float32():
    # torch has no integer softmax or gelu (it raises); we cast, as its exp and tanh do
    t = tl.Tensor(np.array([1, 2, 3], np.int64))
    for out in (t.softmax(-1), t.log_softmax(-1), t.gelu(), t.softplus(), t.mean(), t.var()):
        assert out.dtype == np.float32


# --- schedulers composed on one optimizer: torch's chainable form ------------------------------
def _ours(builders, lr=1.0, steps=12):
    opt = optim.SGD([tl.Tensor(np.zeros(2), requires_grad=True)], lr=lr)
    scheds = [b(opt, schedulers) for b in builders]
    lrs = [opt.lr]
    for _ in range(steps):
        opt.step()
        for s in scheds:
            s.step()
        lrs.append(opt.lr)
    return lrs


def _theirs(builders, lr=1.0, steps=12):
    opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=lr)
    scheds = [b(opt, torch.optim.lr_scheduler) for b in builders]
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        for s in scheds:
            s.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_step_and_cosine_compose_as_in_torch():
    both = [lambda o, S: S.StepLR(o, 2, 0.5), lambda o, S: S.CosineAnnealingLR(o, 6)]
    ours = _ours(both, steps=4)
    np.testing.assert_allclose(ours, [1.0, 0.9330127, 0.375, 0.25, 0.0625], rtol=1e-6)
    np.testing.assert_allclose(ours, _theirs(both, steps=4), rtol=1e-12)


def test_linear_lr_with_zero_iterations_keeps_the_start_factor():
    build = [lambda o, S: S.LinearLR(o, start_factor=0.5, total_iters=0)]
    assert _ours(build, steps=3) == pytest.approx([0.5] * 4)
    np.testing.assert_allclose(_ours(build), _theirs(build), rtol=1e-12)


SINGLE = {
    "step": lambda o, S: S.StepLR(o, 3, 0.5),
    "cosine": lambda o, S: S.CosineAnnealingLR(o, 5, eta_min=0.01),
    "linear": lambda o, S: S.LinearLR(o, 0.25, 1.0, 4),
    "linear-decay": lambda o, S: S.LinearLR(o, 1.0, 0.2, 6),
}


@pytest.mark.parametrize("pair", list(itertools.permutations(sorted(SINGLE), 2)),
                         ids="+".join)
def test_every_pair_of_schedulers_composes_as_in_torch(pair):
    builders = [SINGLE[name] for name in pair]
    np.testing.assert_allclose(_ours(builders, lr=0.3), _theirs(builders, lr=0.3), rtol=1e-10,
                               atol=1e-15)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.floats(0.1, 0.9))
def test_sequential_beside_a_step_schedule_matches_torch(milestone, t_max, gamma):
    builders = [
        lambda o, S: S.SequentialLR(o, [S.LinearLR(o, 0.5, 1.0, milestone),
                                        S.CosineAnnealingLR(o, t_max)], [milestone]),
        lambda o, S: S.StepLR(o, 2, gamma),
    ]
    np.testing.assert_allclose(_ours(builders), _theirs(builders), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, float("inf")])
def test_clip_grad_norm_p_norms_match_torch(norm_type):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s) for s in ((2, 3), (4,), (0,))]
    if norm_type == float("inf"):  # torch raises on the empty one: so do we
        empty = tl.Tensor(np.zeros(0), requires_grad=True)
        empty.grad = tl.Tensor(np.zeros(0))
        with pytest.raises(ValueError, match="empty"):
            optim.clip_grad_norm_(empty, 1.0, norm_type=norm_type)
        grads = grads[:2]
    ours = [tl.Tensor(np.zeros(g.shape), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for o, t, g in zip(ours, theirs, grads):
        o.grad, t.grad = tl.Tensor(g.copy()), torch.tensor(g)
    total = optim.clip_grad_norm_(ours, 0.5, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 0.5, norm_type=norm_type)
    np.testing.assert_allclose(total.item(), expected.item(), rtol=1e-12)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-9)
