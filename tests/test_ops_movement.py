"""Movement and indexing ops, one OpSpec row each (tinygrad_lab.testing.opspec): flip, roll,
repeat, tile, repeat_interleave, gather, scatter (+ add, reduce), index_select, masked_fill,
masked_select, F.pad's modes, narrow, movedim, swapaxes, split, squeeze/unsqueeze/flatten,
einsum and torch's integer-then-array indexing. Shapes include size-0 and size-1 sides."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lab as tl
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.opspec import (
    AT_LEAST_1D,
    WITH_EMPTY,
    Case,
    OpSpec,
    Params,
    Shape,
    check_dtypes_and_grad_shapes,
    check_forward_and_gradcheck,
    check_matches_cpu_reference,
    check_matches_torch,
    with_params,
)

INDEX = np.int64


def _dims(s: Shape) -> st.SearchStrategy[Params]:
    dims = st.lists(st.integers(0, len(s) - 1), unique=True, max_size=len(s)) if s else st.just([])
    return dims.map(lambda d: {"dims": tuple(d)})


def _roll_params(s: Shape) -> st.SearchStrategy[Params]:
    if not s:
        return st.integers(-3, 3).map(lambda k: {"shifts": k, "dims": None})
    per_dim = st.lists(st.tuples(st.integers(-len(s), len(s) - 1), st.integers(-5, 5)),
                       min_size=1, max_size=len(s), unique_by=lambda t: t[0] % len(s))
    return st.one_of(
        st.integers(-5, 5).map(lambda k: {"shifts": k, "dims": None}),
        per_dim.map(lambda p: {"shifts": tuple(k for _, k in p), "dims": tuple(d for d, _ in p)}),
    )


def _repeat_params(s: Shape) -> st.SearchStrategy[Params]:
    extra = st.lists(st.integers(0, 2), min_size=0 if s else 1, max_size=1)  # torch: >= 1 size
    own = st.tuples(*[st.integers(0, 3) for _ in s])
    return st.tuples(extra, own).map(lambda t: {"sizes": (*t[0], *t[1])})


def _tile_params(s: Shape) -> st.SearchStrategy[Params]:
    return st.lists(st.integers(1, 3), max_size=len(s) + 1).map(lambda r: {"dims": tuple(r)})


@st.composite
def _repeat_interleave_params(draw: st.DrawFn, s: Shape) -> Params:
    dim = draw(st.one_of(st.none(), st.integers(-len(s), len(s) - 1)) if s else st.none())
    n = int(np.prod(s)) if dim is None else s[dim]
    per_slice = draw(st.booleans())
    repeats: Any = (np.asarray(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)),
                               dtype=INDEX) if per_slice else draw(st.integers(0, 3)))
    return {"repeats": repeats, "dim": dim}


def _repeat_interleave_ref(x: np.ndarray, repeats: Any, dim: int | None) -> np.ndarray:
    return np.repeat(x, repeats, axis=dim)


def _repeat_interleave_torch(x: torch.Tensor, repeats: Any, dim: int | None) -> torch.Tensor:
    reps = torch.as_tensor(repeats) if isinstance(repeats, np.ndarray) else repeats
    return torch.repeat_interleave(x, reps, dim)


@st.composite
def _gather_params(draw: st.DrawFn, s: Shape) -> Params:
    dim = draw(st.integers(-len(s), len(s) - 1))
    d = dim % len(s)
    shape = tuple(draw(st.integers(0, 3)) if k == d else draw(st.integers(0, n))
                  for k, n in enumerate(s))
    if s[d] == 0:  # no index fits an empty axis: the index must be empty
        shape = tuple(0 if k == d else n for k, n in enumerate(shape))
    index = draw(hnp.arrays(INDEX, shape, elements=st.integers(0, max(s[d] - 1, 0))))
    return {"dim": dim, "index": index}


def _gather_ref(x: np.ndarray, dim: int, index: np.ndarray) -> np.ndarray:
    corner = x[tuple(slice(0, n) if k != dim % x.ndim else slice(None)
                     for k, n in enumerate(index.shape))]
    return np.take_along_axis(corner, index, axis=dim)


@st.composite
def _scatter_cases(draw: st.DrawFn, unique: bool) -> Case:
    """x (s), src (index-shaped) and an index into x along dim; with `unique`,
    no two entries of one index column write the same place (torch's scatter picks any)."""
    s = draw(tst.shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    dim = draw(st.integers(-len(s), len(s) - 1))
    d = dim % len(s)
    shape = [draw(st.integers(0, n)) for n in s]
    if unique:
        shape[d] = draw(st.integers(0, s[d]))
    else:
        shape[d] = draw(st.integers(0, 4))
    src_shape = tuple(shape)  # torch's backward mis-shapes a src larger than the index
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if unique:  # per column, a prefix of a permutation of the positions
        full = list(shape)
        full[d] = s[d]
        index = np.argsort(rng.random(full), axis=d)
        index = np.take(index, np.arange(shape[d]), axis=d)
    else:
        index = rng.integers(0, s[d], size=shape)
    return (s, src_shape), {"dim": dim, "index": index.astype(INDEX)}


def _np_scatter(x: np.ndarray, dim: int, index: np.ndarray, src: np.ndarray, reduce: str,
                include_self: bool = True) -> np.ndarray:
    """A plain loop over the index: the definition of torch's scatter family."""
    out = x.copy()
    d = dim % x.ndim
    groups: dict[tuple[int, ...], list[float]] = {}
    for pos in np.ndindex(*index.shape):
        target = list(pos)
        target[d] = int(index[pos])
        groups.setdefault(tuple(target), []).append(src[pos])
    for target, values in groups.items():
        if reduce == "replace":
            out[target] = values[-1]
            continue
        vals = ([x[target]] if include_self else []) + values
        fn = {"sum": np.sum, "prod": np.prod, "mean": np.mean, "amax": np.max, "amin": np.min}
        out[target] = fn[reduce](vals)
    return out


def _scatter_reduce_spec(reduce: str, include_self: bool) -> OpSpec:
    return OpSpec(
        f"scatter_reduce_{reduce}_{'self' if include_self else 'noself'}",
        lambda x, src, dim, index: x.scatter_reduce(dim, index, src, reduce, include_self),
        lambda x, src, dim, index: _np_scatter(x, dim, index, src, reduce, include_self),
        2,
        cases=lambda: _scatter_cases(False),
        separated=reduce in ("amax", "amin"),
        torch_fn=lambda x, src, dim, index: x.scatter_reduce(
            dim, torch.as_tensor(index), src, reduce, include_self=include_self),
    )


@st.composite
def _index_select_params(draw: st.DrawFn, s: Shape) -> Params:
    dim = draw(st.integers(-len(s), len(s) - 1))
    n = s[dim]
    size = draw(st.integers(0, 4)) if n else 0
    return {"dim": dim, "index": draw(hnp.arrays(INDEX, (size,),
                                                 elements=st.integers(0, max(n - 1, 0))))}


@st.composite
def _mask_params(draw: st.DrawFn, s: Shape) -> Params:
    mask_shape = draw(hnp.broadcastable_shapes(s, max_dims=len(s), max_side=4))
    mask = draw(hnp.arrays(np.bool_, mask_shape, elements=st.booleans()))
    return {"mask": mask, "value": draw(st.sampled_from([0.0, -1.5, 7.0]))}


@st.composite
def _pad_cases(draw: st.DrawFn) -> Case:
    """torch's flat spec; the copying modes on the input ranks torch takes for them (the
    last k dims padded of a (k+1)- or (k+2)-dimensional input)."""
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    if mode == "constant":
        s = draw(WITH_EMPTY)
        k = draw(st.integers(0, len(s)))
        pad = [draw(st.integers(-1 if s and min(s) > 1 else 0, 2)) for _ in range(2 * k)]
        return (s,), {"pad": tuple(pad), "mode": mode, "value": draw(st.sampled_from([0.0, 2.5]))}
    k = draw(st.integers(1, 3))
    ndim = draw(st.integers(k + 1, min(k + 2, 4)))
    s = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    pad = []
    for i in range(k):
        n = s[ndim - 1 - i]
        most = {"reflect": n - 1, "circular": n, "replicate": 2}[mode]
        pad += [draw(st.integers(0, min(most, 2))), draw(st.integers(0, min(most, 2)))]
    return (s,), {"pad": tuple(pad), "mode": mode, "value": None}


def _pad_ref(x: np.ndarray, pad: tuple[int, ...], mode: str, value: Any) -> np.ndarray:
    return torch_F.pad(torch.as_tensor(x), pad, mode, value).numpy()


def _narrow_params(s: Shape) -> st.SearchStrategy[Params]:
    @st.composite
    def draw_params(draw: st.DrawFn) -> Params:
        dim = draw(st.integers(-len(s), len(s) - 1))
        n = s[dim]
        start = draw(st.integers(0, n))
        return {"dim": dim, "start": start, "length": draw(st.integers(0, n - start))}

    return draw_params()


def _movedim_params(s: Shape) -> st.SearchStrategy[Params]:
    n = len(s)
    return st.integers(0, n).flatmap(lambda k: st.tuples(
        st.permutations(range(n)).map(lambda p: tuple(p[:k])),
        st.permutations(range(n)).map(lambda p: tuple(p[:k])),
    )).map(lambda t: {"source": t[0], "destination": t[1]})


def _swap_params(s: Shape) -> st.SearchStrategy[Params]:
    ax = st.integers(-len(s), len(s) - 1)
    return st.fixed_dictionaries({"axis0": ax, "axis1": ax})


@st.composite
def _split_params(draw: st.DrawFn, s: Shape) -> Params:
    dim = draw(st.integers(-len(s), len(s) - 1))
    n = s[dim]
    if draw(st.booleans()) and n:
        return {"split": draw(st.integers(1, n + 1)), "dim": dim}
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    edges = [0, *cuts, n]
    return {"split": [b - a for a, b in zip(edges, edges[1:])], "dim": dim}


def _split_apply(x: Any, split: Any, dim: int, cat: Any) -> Any:
    pieces = x.split(split, dim)
    return cat([p * float(i + 1) for i, p in enumerate(pieces)], dim)  # each piece its own scale


def _np_split(x: np.ndarray, split: Any, dim: int) -> np.ndarray:
    n = x.shape[dim]
    sizes = [min(split, n - a) for a in range(0, n, split)] if isinstance(split, int) else split
    if isinstance(split, int) and not n:
        sizes = [0]
    cuts = np.cumsum(sizes)[:-1]
    return np.concatenate([p * float(i + 1) for i, p in enumerate(np.split(x, cuts, axis=dim))],
                          axis=dim)


def _squeeze_params(s: Shape) -> st.SearchStrategy[Params]:
    if not s:
        return st.sampled_from([None, 0, -1]).map(lambda a: {"dim": a})
    return st.one_of(st.none(), st.integers(-len(s), len(s) - 1)).map(lambda a: {"dim": a})


def _squeeze_ref(x: np.ndarray, dim: int | None) -> np.ndarray:
    if dim is None:
        return np.squeeze(x)
    if x.ndim == 0 or x.shape[dim] != 1:
        return x
    return np.squeeze(x, dim)


def _flatten_params(s: Shape) -> st.SearchStrategy[Params]:
    n = max(len(s), 1)
    return st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).map(
        lambda t: {"start_dim": min(t) - (n if t[0] % 2 else 0), "end_dim": max(t)})


def _flatten_ref(x: np.ndarray, start_dim: int, end_dim: int) -> np.ndarray:
    if x.ndim == 0:
        return x.reshape(1)
    a, b = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(*x.shape[:a], int(np.prod(x.shape[a:b + 1])), *x.shape[b + 1:])


EINSUMS = [  # (equation, letters of each operand)
    ("ij,jk->ik", ("ij", "jk")), ("bij,bjk->bik", ("bij", "bjk")), ("i,i->", ("i", "i")),
    ("i,j->ij", ("i", "j")), ("ij,ij->ij", ("ij", "ij")), ("ij,kj", ("ij", "kj")),
    ("...ij,...jk->...ik", ("bij", "bjk")), ("bhqd,bhkd->bhqk", ("bhqd", "bhkd")),
    ("ii,i->i", ("ii", "i")), ("ij,jk->", ("ij", "jk")), ("ijk,k->ji", ("ijk", "k")),
]
EINSUMS_ONE = ["ij->ji", "ii->i", "ii", "ijk->", "ij->j", "iij->j", "ijk->kij", "...i->...", "i"]


@st.composite
def _einsum2_cases(draw: st.DrawFn) -> Case:
    eq, letters = draw(st.sampled_from(EINSUMS))
    size = {c: draw(st.integers(0, 3)) for c in "".join(letters)}
    return tuple(tuple(size[c] for c in term) for term in letters), {"equation": eq}


@st.composite
def _einsum1_cases(draw: st.DrawFn) -> Case:
    eq = draw(st.sampled_from(EINSUMS_ONE))
    term = eq.split("->")[0].replace("...", "ab")
    size = {c: draw(st.integers(0, 3)) for c in term}
    return (tuple(size[c] for c in term),), {"equation": eq}


def _torch_index_params(s: Shape) -> st.SearchStrategy[Params]:
    @st.composite
    def draw_params(draw: st.DrawFn) -> Params:
        ints = st.integers(0, s[0] - 1)
        idx = draw(hnp.arrays(INDEX, (draw(st.integers(0, 3)),), elements=st.integers(
            0, s[2] - 1)))
        return {"first": draw(ints), "index": idx}

    return draw_params()


OP_SPECS = [
    OpSpec("flip", lambda x, dims: x.flip(dims), lambda x, dims: np.flip(x, dims),
           cases=with_params(WITH_EMPTY, _dims), torch_fn=torch.flip),
    OpSpec("roll", lambda x, shifts, dims: x.roll(shifts, dims),
           lambda x, shifts, dims: np.roll(x, shifts, dims),
           cases=with_params(WITH_EMPTY, _roll_params), torch_fn=torch.roll),
    OpSpec("repeat", lambda x, sizes: x.repeat(*sizes), lambda x, sizes: np.tile(x, sizes),
           cases=with_params(WITH_EMPTY, _repeat_params),
           torch_fn=lambda x, sizes: x.repeat(*sizes)),
    OpSpec("tile", lambda x, dims: x.tile(dims), lambda x, dims: np.tile(x, dims),
           cases=with_params(WITH_EMPTY, _tile_params), torch_fn=torch.tile),
    OpSpec("repeat_interleave", lambda x, repeats, dim: x.repeat_interleave(repeats, dim),
           _repeat_interleave_ref, cases=with_params(WITH_EMPTY, _repeat_interleave_params),
           torch_fn=_repeat_interleave_torch),
    OpSpec("gather", lambda x, dim, index: tl.gather(x, dim, index), _gather_ref,
           cases=with_params(AT_LEAST_1D, _gather_params),
           torch_fn=lambda x, dim, index: torch.gather(x, dim, torch.as_tensor(index))),
    OpSpec("scatter", lambda x, src, dim, index: x.scatter(dim, index, src),
           lambda x, src, dim, index: _np_scatter(x, dim, index, src, "replace"), 2,
           cases=lambda: _scatter_cases(True),
           torch_fn=lambda x, src, dim, index: torch.scatter(x, dim, torch.as_tensor(index), src)),
    OpSpec("scatter_add", lambda x, src, dim, index: tl.scatter_add(x, dim, index, src),
           lambda x, src, dim, index: _np_scatter(x, dim, index, src, "sum"), 2,
           cases=lambda: _scatter_cases(False),
           torch_fn=lambda x, src, dim, index: torch.scatter_add(x, dim, torch.as_tensor(index),
                                                                 src)),
    *[_scatter_reduce_spec(r, s) for r in ("sum", "prod", "mean", "amax", "amin")
      for s in (True, False)],
    OpSpec("index_select", lambda x, dim, index: x.index_select(dim, index),
           lambda x, dim, index: np.take(x, index, axis=dim),
           cases=with_params(AT_LEAST_1D, _index_select_params),
           torch_fn=lambda x, dim, index: torch.index_select(x, dim, torch.as_tensor(index))),
    OpSpec("masked_fill", lambda x, mask, value: x.masked_fill(mask, value),
           lambda x, mask, value: np.where(mask, value, x),
           cases=with_params(WITH_EMPTY, _mask_params),
           torch_fn=lambda x, mask, value: x.masked_fill(torch.as_tensor(mask), value)),
    OpSpec("masked_select", lambda x, mask, value: x.masked_select(mask),
           lambda x, mask, value: np.broadcast_to(x, np.broadcast_shapes(x.shape, mask.shape))[
               np.broadcast_to(mask, np.broadcast_shapes(x.shape, mask.shape))],
           cases=with_params(AT_LEAST_1D, _mask_params),
           torch_fn=lambda x, mask, value: x.masked_select(torch.as_tensor(mask))),
    OpSpec("pad", lambda x, pad, mode, value: F.pad(x, pad, mode, value), _pad_ref,
           cases=_pad_cases, torch_fn=torch_F.pad),
    OpSpec("narrow", lambda x, dim, start, length: x.narrow(dim, start, length),
           lambda x, dim, start, length: np.take(x, np.arange(start, start + length), axis=dim),
           cases=with_params(AT_LEAST_1D, _narrow_params), torch_fn=torch.narrow),
    OpSpec("movedim", lambda x, source, destination: x.movedim(source, destination),
           np.moveaxis, cases=with_params(WITH_EMPTY, _movedim_params), torch_fn=torch.movedim),
    OpSpec("swapaxes", lambda x, axis0, axis1: x.swapaxes(axis0, axis1),
           lambda x, axis0, axis1: np.swapaxes(x, axis0, axis1),
           cases=with_params(AT_LEAST_1D, _swap_params),
           torch_fn=lambda x, axis0, axis1: torch.swapaxes(x, axis0, axis1)),
    OpSpec("split", lambda x, split, dim: _split_apply(x, split, dim, tl.cat), _np_split,
           cases=with_params(AT_LEAST_1D, _split_params),
           torch_fn=lambda x, split, dim: _split_apply(x, split, dim, torch.cat)),
    OpSpec("squeeze", lambda x, dim: x.squeeze(dim), _squeeze_ref,
           cases=with_params(WITH_EMPTY, _squeeze_params),
           torch_fn=lambda x, dim: x.squeeze() if dim is None else x.squeeze(dim)),
    OpSpec("unsqueeze", lambda x, dim: x.unsqueeze(dim), lambda x, dim: np.expand_dims(x, dim),
           cases=with_params(WITH_EMPTY, lambda s: st.integers(-len(s) - 1, len(s)).map(
               lambda d: {"dim": d})), torch_fn=torch.unsqueeze),
    OpSpec("flatten", lambda x, start_dim, end_dim: x.flatten(start_dim, end_dim), _flatten_ref,
           cases=with_params(WITH_EMPTY, _flatten_params), torch_fn=torch.flatten),
    OpSpec("einsum", lambda a, b, equation: tl.einsum(equation, a, b),
           lambda a, b, equation: np.einsum(equation, a, b), 2, cases=_einsum2_cases,
           torch_fn=lambda a, b, equation: torch.einsum(equation, a, b)),
    OpSpec("einsum_one", lambda a, equation: tl.einsum(equation, a),
           lambda a, equation: np.einsum(equation, a) * 1.0, cases=_einsum1_cases,
           torch_fn=lambda a, equation: torch.einsum(equation, a) * 1.0),
    OpSpec("getitem_int_slice_array", lambda x, first, index: x[first, :, index],
           lambda x, first, index: x[first][:, index],  # torch's order: (3, k) from (2, 3, 4)
           cases=with_params(tst.shapes(min_dims=3, max_dims=3, min_side=1, max_side=4),
                             _torch_index_params),
           torch_fn=lambda x, first, index: x[first, :, torch.as_tensor(index)]),
]
SPEC_IDS = [spec.name for spec in OP_SPECS]
TORCH_SPECS = [spec for spec in OP_SPECS if spec.torch_fn is not None]


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=20)
@given(data=st.data())
def test_movement_forward_and_gradcheck(spec: OpSpec, data: st.DataObject) -> None:
    check_forward_and_gradcheck(spec, data)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=10)
@given(data=st.data())
def test_movement_dtypes_and_grad_shapes(spec: OpSpec, data: st.DataObject) -> None:
    check_dtypes_and_grad_shapes(spec, data)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=3)
@given(data=st.data())
def test_movement_on_each_device_matches_the_cpu_reference(spec: OpSpec, data: st.DataObject,
                                                           device) -> None:
    check_matches_cpu_reference(spec, data, device.device)


@pytest.mark.parametrize("spec", TORCH_SPECS, ids=[spec.name for spec in TORCH_SPECS])
@settings(max_examples=20)
@given(data=st.data())
def test_movement_matches_torch(spec: OpSpec, data: st.DataObject) -> None:
    check_matches_torch(spec, data)
