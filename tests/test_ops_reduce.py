"""Reductions and scans, one OpSpec row each (tinygrad_lab.testing.opspec): torch's spelling
(dim=, keepdim=) beside the house's, prod, max/min along a dim, var and std, logsumexp, cumsum,
cumprod, norm, sort and topk. Shapes include size-0 and size-1 dimensions where the op
defines a value there."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.opspec import (
    AT_LEAST_1D,
    WITH_EMPTY,
    OpSpec,
    Params,
    Shape,
    check_dtypes_and_grad_shapes,
    check_forward_and_gradcheck,
    check_matches_cpu_reference,
    check_matches_torch,
    with_params,
)

NON_EMPTY = tst.shapes(max_dims=3, min_side=1, max_side=4)


def _torch_dim(dim: Any, x: torch.Tensor) -> Any:
    """torch reads dim=() as every dim; NumPy as none."""
    return tuple(range(x.ndim)) if dim is None else dim


def _dim_keepdim(s: Shape) -> st.SearchStrategy[Params]:
    return st.fixed_dictionaries({"dim": tst.axes(len(s)), "keepdim": st.booleans()})


def _one_dim(s: Shape) -> st.SearchStrategy[Params]:
    dim = st.integers(-len(s), len(s) - 1) if s else st.sampled_from([0, -1])
    return st.fixed_dictionaries({"dim": dim, "keepdim": st.booleans()})


def _one_dim_or_none(s: Shape) -> st.SearchStrategy[Params]:
    dim = st.one_of(st.none(), st.integers(-len(s), len(s) - 1)) if s else st.none()
    return st.fixed_dictionaries({"dim": dim, "keepdim": st.booleans()})


def _scan_dim(s: Shape) -> st.SearchStrategy[Params]:
    return st.fixed_dictionaries({"dim": st.integers(-len(s), len(s) - 1)})


def _sum_torch(x: torch.Tensor, dim: Any, keepdim: bool) -> torch.Tensor:
    if dim == ():
        return x * 1.0
    return torch.sum(x, dim=_torch_dim(dim, x), keepdim=keepdim)


def _prod_ref(x: np.ndarray, dim: Any, keepdim: bool) -> Any:
    return np.prod(x, axis=dim, keepdims=keepdim)


def _prod_torch(x: torch.Tensor, dim: Any, keepdim: bool) -> torch.Tensor:
    if dim is None:
        out = torch.prod(x)
        return out.reshape((1,) * x.ndim) if keepdim else out
    return torch.prod(x, dim, keepdim=keepdim)


def _extreme_ref(fn: Any) -> Any:
    return lambda x, dim, keepdim: fn(x, axis=dim if x.ndim else None, keepdims=keepdim)


@st.composite
def _var_cases(draw: st.DrawFn, corrections: tuple[float, ...] = (1,)) -> Any:
    """dim None or one axis, every reduced side at least 2 long: torch's default correction=1
    divides by n - 1, so n = 1 is inf/nan (tests/test_semantics.py checks that edge)."""
    s = draw(tst.shapes(min_dims=1, max_dims=3, min_side=0, max_side=4))
    dim = draw(st.one_of(st.none(), st.integers(-len(s), len(s) - 1)))
    s = tuple(max(n, 2) if dim is None or i == dim % len(s) else n for i, n in enumerate(s))
    return (s,), {"dim": dim, "keepdim": draw(st.booleans()),
                  "correction": draw(st.sampled_from(corrections))}


def _var_ref(x: np.ndarray, dim: Any, keepdim: bool, correction: float) -> Any:
    return np.var(x, axis=dim, keepdims=keepdim, ddof=correction)


def _std_ref(x: np.ndarray, dim: Any, keepdim: bool, correction: float) -> Any:
    return np.std(x, axis=dim, keepdims=keepdim, ddof=correction)


def _std_valid(x: np.ndarray, dim: Any, keepdim: bool, correction: float) -> bool:
    return bool(np.all(np.var(x, axis=dim) > 1e-2))  # sqrt's gradient is infinite at 0


def _lse_ref(x: np.ndarray, dim: Any, keepdim: bool) -> Any:
    return np.log(np.sum(np.exp(x), axis=dim, keepdims=keepdim))


def _lse_torch(x: torch.Tensor, dim: Any, keepdim: bool) -> torch.Tensor:
    if dim == ():
        return x * 1.0
    return torch.logsumexp(x, dim=_torch_dim(dim, x), keepdim=keepdim)


def _norm_params(s: Shape) -> st.SearchStrategy[Params]:
    dim = st.one_of(st.none(), st.integers(-len(s), len(s) - 1),
                    st.permutations(range(len(s))).map(lambda p: tuple(p[:2])).filter(bool))
    return st.fixed_dictionaries({"p": st.sampled_from([2, "fro", 1, 3, 1.5]), "dim": dim,
                                  "keepdim": st.booleans()})


def _norm_ref(x: np.ndarray, p: Any, dim: Any, keepdim: bool) -> Any:
    q = 2 if p == "fro" else p
    return np.sum(np.abs(x) ** q, axis=dim, keepdims=keepdim) ** (1.0 / q)


def _norm_valid(x: np.ndarray, p: Any, dim: Any, keepdim: bool) -> bool:
    return bool(np.all(np.sum(np.abs(x), axis=dim) > 1e-1))  # off the zero vector's kink


def _norm_inf_params(s: Shape) -> st.SearchStrategy[Params]:
    dim = st.one_of(st.none(), st.integers(-len(s), len(s) - 1))
    return st.fixed_dictionaries({"p": st.sampled_from([math.inf, -math.inf]), "dim": dim,
                                  "keepdim": st.booleans()})


def _norm_inf_ref(x: np.ndarray, p: float, dim: Any, keepdim: bool) -> Any:
    fn = np.max if p > 0 else np.min
    return fn(np.abs(x), axis=dim, keepdims=keepdim)


def _sort_params(s: Shape) -> st.SearchStrategy[Params]:
    return st.fixed_dictionaries({"dim": st.integers(-len(s), len(s) - 1),
                                  "descending": st.booleans()})


def _sort_ref(x: np.ndarray, dim: int, descending: bool) -> Any:
    out = np.sort(x, axis=dim)
    return np.flip(out, axis=dim) if descending else out


@st.composite
def _topk_cases(draw: st.DrawFn) -> Any:
    s = draw(AT_LEAST_1D)
    dim = draw(st.integers(-len(s), len(s) - 1))
    k = draw(st.integers(0, s[dim]))
    return (s,), {"k": k, "dim": dim, "largest": draw(st.booleans())}


def _topk_ref(x: np.ndarray, k: int, dim: int, largest: bool) -> Any:
    out = np.sort(x, axis=dim)
    out = np.flip(out, axis=dim) if largest else out
    return np.take(out, np.arange(k), axis=dim)


def _cumprod_torch(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.cumprod(x, dim)


OP_SPECS = [
    OpSpec("sum_dim", lambda x, dim, keepdim: x.sum(dim=dim, keepdim=keepdim),
           lambda x, dim, keepdim: np.sum(x, axis=dim, keepdims=keepdim),
           cases=with_params(WITH_EMPTY, _dim_keepdim), torch_fn=_sum_torch),
    OpSpec("mean_dim", lambda x, dim, keepdim: x.mean(dim=dim, keepdim=keepdim),
           lambda x, dim, keepdim: np.mean(x, axis=dim, keepdims=keepdim),
           cases=with_params(NON_EMPTY, _dim_keepdim),
           torch_fn=lambda x, dim, keepdim: _sum_torch(x, dim, keepdim) if dim == () else
           torch.mean(x, dim=_torch_dim(dim, x), keepdim=keepdim)),
    OpSpec("prod", lambda x, dim, keepdim: x.prod(dim=dim, keepdim=keepdim), _prod_ref,
           cases=with_params(WITH_EMPTY, _one_dim_or_none), torch_fn=_prod_torch),
    OpSpec("max_dim", lambda x, dim, keepdim: x.max(dim=dim, keepdim=keepdim).values,
           _extreme_ref(np.max), cases=with_params(NON_EMPTY, _one_dim), separated=True,
           torch_fn=lambda x, dim, keepdim: torch.max(x, dim, keepdim).values),
    OpSpec("min_dim", lambda x, dim, keepdim: x.min(dim=dim, keepdim=keepdim).values,
           _extreme_ref(np.min), cases=with_params(NON_EMPTY, _one_dim), separated=True,
           torch_fn=lambda x, dim, keepdim: torch.min(x, dim, keepdim).values),
    OpSpec("min_house", lambda x, dim, keepdim: x.min(dim, keepdim),
           lambda x, dim, keepdim: np.min(x, axis=dim, keepdims=keepdim),
           cases=with_params(NON_EMPTY, _dim_keepdim), separated=True,
           torch_fn=lambda x, dim, keepdim: x * 1.0 if dim == () else
           torch.amin(x, dim=_torch_dim(dim, x), keepdim=keepdim)),
    # var/std: the default is torch's correction=1; the _correction rows pass 0 or 1 explicitly
    OpSpec("var", lambda x, dim, keepdim, correction: x.var(dim=dim, keepdim=keepdim),
           _var_ref, cases=_var_cases,
           torch_fn=lambda x, dim, keepdim, correction: torch.var(x, dim=dim, keepdim=keepdim)),
    OpSpec("var_correction", lambda x, dim, keepdim, correction:
           x.var(dim=dim, keepdim=keepdim, correction=correction), _var_ref,
           cases=lambda: _var_cases((0, 1)), torch_fn=lambda x, dim, keepdim, correction:
           torch.var(x, dim=dim, keepdim=keepdim, correction=correction)),
    OpSpec("std", lambda x, dim, keepdim, correction: x.std(dim=dim, keepdim=keepdim),
           _std_ref, cases=_var_cases, valid=_std_valid,
           torch_fn=lambda x, dim, keepdim, correction: torch.std(x, dim=dim, keepdim=keepdim)),
    OpSpec("std_correction", lambda x, dim, keepdim, correction:
           x.std(dim=dim, keepdim=keepdim, correction=correction), _std_ref,
           cases=lambda: _var_cases((0, 1)), valid=_std_valid,
           torch_fn=lambda x, dim, keepdim, correction:
           torch.std(x, dim=dim, keepdim=keepdim, correction=correction)),
    OpSpec("logsumexp", lambda x, dim, keepdim: x.logsumexp(dim=dim, keepdim=keepdim),
           _lse_ref, cases=with_params(NON_EMPTY, _dim_keepdim), torch_fn=_lse_torch),
    OpSpec("cumsum", lambda x, dim: x.cumsum(dim), lambda x, dim: np.cumsum(x, axis=dim),
           cases=with_params(AT_LEAST_1D, _scan_dim), torch_fn=torch.cumsum),
    OpSpec("cumprod", lambda x, dim: x.cumprod(dim=dim), lambda x, dim: np.cumprod(x, axis=dim),
           cases=with_params(AT_LEAST_1D, _scan_dim), torch_fn=_cumprod_torch),
    OpSpec("norm", lambda x, p, dim, keepdim: x.norm(p, dim, keepdim), _norm_ref,
           cases=with_params(tst.shapes(min_dims=1, max_dims=3, max_side=4), _norm_params),
           kinks=(0.0,), margin=0.1, valid=_norm_valid,
           torch_fn=lambda x, p, dim, keepdim: torch.norm(x, p, dim, keepdim)),
    OpSpec("norm_inf", lambda x, p, dim, keepdim: x.norm(p, dim, keepdim), _norm_inf_ref,
           cases=with_params(tst.shapes(min_dims=1, max_dims=3, max_side=4), _norm_inf_params),
           domain=(0.2, 3.0), separated=True,
           torch_fn=lambda x, p, dim, keepdim: torch.norm(x, p, dim, keepdim)),
    OpSpec("sort", lambda x, dim, descending: x.sort(dim, descending).values, _sort_ref,
           cases=with_params(AT_LEAST_1D, _sort_params), separated=True,
           torch_fn=lambda x, dim, descending: torch.sort(x, dim, descending).values),
    OpSpec("topk", lambda x, k, dim, largest: x.topk(k, dim, largest).values, _topk_ref,
           cases=_topk_cases, separated=True,
           torch_fn=lambda x, k, dim, largest: torch.topk(x, k, dim, largest).values),
]
SPEC_IDS = [spec.name for spec in OP_SPECS]
TORCH_SPECS = [spec for spec in OP_SPECS if spec.torch_fn is not None]


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=30)
@given(data=st.data())
def test_reduce_forward_and_gradcheck(spec: OpSpec, data: st.DataObject) -> None:
    check_forward_and_gradcheck(spec, data)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=15)
@given(data=st.data())
def test_reduce_dtypes_and_grad_shapes(spec: OpSpec, data: st.DataObject) -> None:
    check_dtypes_and_grad_shapes(spec, data)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=3)
@given(data=st.data())
def test_reduce_on_each_device_matches_the_cpu_reference(spec: OpSpec, data: st.DataObject,
                                                         device) -> None:
    check_matches_cpu_reference(spec, data, device.device)


@pytest.mark.parametrize("spec", TORCH_SPECS, ids=[spec.name for spec in TORCH_SPECS])
@settings(max_examples=30)
@given(data=st.data())
def test_reduce_matches_torch(spec: OpSpec, data: st.DataObject) -> None:
    check_matches_torch(spec, data)
