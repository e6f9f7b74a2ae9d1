"""Op tables for property-based tests: one OpSpec row per op, four checks per row.

A row names the op (`tensor_fn`), its NumPy reference (`numpy_fn`) and how to draw inputs; the
checks below are what the project's suites run for every row:

- `check_forward_and_gradcheck`: float64 forward equals the reference, and gradcheck passes;
- `check_dtypes_and_grad_shapes`: float64 and float32 keep the reference's dtype, float32 values
  are close, and every gradient has its input's shape and dtype;
- `check_matches_cpu_reference`: on another device, output and gradients equal the CPU
  reference path's element for element;
- `check_matches_torch`: float64 output and gradients equal PyTorch's (rows with `torch_fn`).

A test file holds a list of rows and four short tests that draw with `st.data()` and call these
(tests/test_ops.py is the model). Needs hypothesis (the `dev` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lab as tl
from tinygrad_lab.backends import DEFAULT_DEVICE
from tinygrad_lab.tensor import Tensor
from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.gradcheck import check_forward, gradcheck

Shape = tuple[int, ...]
MAX_SIDE = 4  # up to 4**4 = 256 elements: every element is drawn and perturbed by gradcheck
SHAPES = tst.shapes(max_side=MAX_SIDE)
WITH_EMPTY = tst.shapes(max_dims=3, min_side=0, max_side=MAX_SIDE)
"""Up to three axes, size-0 and size-1 sides included: for ops defined on empty tensors."""
AT_LEAST_1D = tst.shapes(min_dims=1, max_dims=3, min_side=0, max_side=MAX_SIDE)
"""The same with at least one axis: for ops that take a dim."""
Params = dict[str, Any]
Case = tuple[tuple[Shape, ...], Params]
Domain = tuple[float, float]


@dataclass(frozen=True)
class OpSpec:
    """One op under test.

    tensor_fn(*tensors, **params) and numpy_fn(*arrays, **params) compute the same thing.
    domain: (low, high) for every input, or one pair per input.
    kinks: values every float input keeps `margin` away from (relu at 0, a pole of 1/x, ...).
    cases: strategy of (input shapes, params); default: shapes() for one input, broadcastable
        shapes for more.
    dtypes: per input "float" (default) or "bool" (e.g. the condition of `where`).
    separated: all float input values pairwise apart (ops that pick a maximum: no ties).
    valid: predicate on (*arrays, **params) rejecting draws that sit on a kink no input-wise
        rule can avoid (relu after a matmul).
    keeps_dtype: False for ops whose output dtype differs from their input's by design (astype).
    torch_fn: the same op in PyTorch, torch_fn(*torch_tensors, **params); where given, values
        and gradients are compared with torch's in float64.
    torch_tolerance: (rtol, atol) of that comparison; normalisations, whose gradients come out
        of cancelling sums, differ from torch's in the last bits of near-zero entries.
    """

    name: str
    tensor_fn: Callable[..., Tensor]
    numpy_fn: Callable[..., Any]
    n_inputs: int = 1
    domain: Domain | tuple[Domain, ...] = (-3.0, 3.0)
    kinks: tuple[float, ...] = ()
    margin: float = 1e-2
    cases: Callable[[], st.SearchStrategy[Case]] | None = None
    dtypes: tuple[str, ...] | None = None
    separated: bool = False
    valid: Callable[..., bool] | None = None
    gradcheck_kw: Params = field(default_factory=dict)
    keeps_dtype: bool = True
    torch_fn: Callable[..., Any] | None = None
    torch_tolerance: tuple[float, float] = (1e-12, 1e-14)

    def domain_of(self, i: int) -> Domain:
        d = self.domain
        return d[i] if isinstance(d[0], tuple) else d  # type: ignore[return-value]

    def case_strategy(self) -> st.SearchStrategy[Case]:
        if self.cases is not None:
            return self.cases()
        if self.n_inputs == 1:
            return SHAPES.map(lambda s: ((s,), {}))
        return tst.broadcastable_shapes(self.n_inputs, max_side=MAX_SIDE).map(lambda ss: (ss, {}))


# --- case strategies: (input shapes, params) ---
def with_params(
    shape_strategy: st.SearchStrategy[Shape], params: Callable[[Shape], st.SearchStrategy[Params]]
) -> Callable[[], st.SearchStrategy[Case]]:
    """Cases for one input whose params depend on its shape."""
    return lambda: shape_strategy.flatmap(lambda s: params(s).map(lambda p: ((s,), p)))


def reduce_params(s: Shape) -> st.SearchStrategy[Params]:
    return st.fixed_dictionaries({"axis": tst.axes(len(s)), "keepdims": st.booleans()})


def axis_param(s: Shape) -> st.SearchStrategy[Params]:
    return st.fixed_dictionaries({"axis": st.integers(-len(s), len(s) - 1)})


@st.composite
def op_inputs(draw: st.DrawFn, spec: OpSpec) -> tuple[list[Any], Params]:
    """float64 arrays (and boolean masks) for every input of `spec`, and the op's params."""
    shapes, params = draw(spec.case_strategy())
    assert len(shapes) == spec.n_inputs, f"{spec.name}: cases drew {len(shapes)} shapes"
    kinds = spec.dtypes or ("float",) * len(shapes)
    arrays: list[Any] = [None] * len(shapes)
    floats = [i for i, kind in enumerate(kinds) if kind == "float"]
    if spec.separated:
        low, high = spec.domain_of(0)
        drawn = draw(tst.separated_arrays(*[shapes[i] for i in floats], low=low, high=high))
        for i, a in zip(floats, drawn):
            arrays[i] = a
    for i, (shape, kind) in enumerate(zip(shapes, kinds)):
        if kind == "bool":
            arrays[i] = draw(hnp.arrays(np.bool_, shape, elements=st.booleans(), fill=st.nothing()))
        elif arrays[i] is None:
            values = tst.arrays(shape, np.float64, *spec.domain_of(i))
            if spec.kinks:
                values = values.map(tst.away_from(spec.kinks, spec.margin))
            arrays[i] = draw(values)
    if spec.valid is not None:
        assume(spec.valid(*arrays, **params))
    return arrays, params


def leaves(arrays: list[Any], dtype: Any) -> list[Tensor]:
    """Tensors of the drawn arrays, float ones cast to `dtype` and requiring grad."""
    return [
        Tensor(a.astype(dtype), requires_grad=True) if a.dtype.kind == "f" else Tensor(a)
        for a in arrays
    ]


def forward_backward(spec: OpSpec, arrays: list[Any], params: Params, device: str) -> list[Any]:
    """The output and every float input's gradient (seeded upstream gradient), run on `device`."""
    leaves = [
        Tensor(a, requires_grad=True, device=device) if a.dtype.kind == "f"
        else Tensor(a, device=device)
        for a in arrays
    ]
    if "labels" in params:  # the op itself takes device labels (F.cross_entropy moves them)
        params = {**params, "labels": leaves[0]._backend.asarray(params["labels"])}
    out = spec.tensor_fn(*leaves, **params)
    seed = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype)
    out.backward(Tensor(seed, device=device))
    return [out.numpy()] + [leaf.grad.numpy() for leaf in leaves if leaf.requires_grad]



def check_forward_and_gradcheck(spec: OpSpec, data: st.DataObject) -> None:
    """float64: forward equals the NumPy reference, and gradcheck passes."""
    arrays, params = data.draw(op_inputs(spec), label="inputs, params")
    check_forward(
        lambda *xs: spec.tensor_fn(*xs, **params),
        lambda *xs: spec.numpy_fn(*xs, **params),
        *arrays,
        atol=1e-12,
        rtol=1e-9,
    )
    assert gradcheck(lambda *xs: spec.tensor_fn(*xs, **params), *arrays, **spec.gradcheck_kw)


def check_dtypes_and_grad_shapes(spec: OpSpec, data: st.DataObject) -> None:
    """float64 and float32 inputs: the output keeps the dtype (NumPy's, and float32 stays
    float32), float32 values are close to NumPy's, and every gradient has its input's shape and
    dtype."""
    arrays, params = data.draw(op_inputs(spec), label="inputs, params")
    for dtype in (np.float64, np.float32):
        inputs = leaves(arrays, dtype)
        out = spec.tensor_fn(*inputs, **params)
        expected = np.asarray(spec.numpy_fn(*[t.numpy() for t in inputs], **params))
        assert out.dtype == expected.dtype, f"{dtype.__name__} inputs: NumPy gives {expected.dtype}"
        if spec.keeps_dtype:
            assert out.dtype == dtype
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)
        assert out.requires_grad
        out.backward(np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype))
        for leaf in inputs:
            if leaf.requires_grad:
                assert leaf.grad is not None, "no gradient reached a float input"
                assert leaf.grad.shape == leaf.shape
                assert leaf.grad.dtype == leaf.dtype


def check_matches_cpu_reference(spec: OpSpec, data: st.DataObject, device: str) -> None:
    """On `device`: the output and gradients equal the CPU reference path's."""
    arrays, params = data.draw(op_inputs(spec), label="inputs, params")
    got = forward_backward(spec, arrays, params, device)
    with tl.reference():
        want = forward_backward(spec, arrays, params, DEFAULT_DEVICE)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11)


def check_matches_torch(spec: OpSpec, data: st.DataObject) -> None:
    """float64: the output and every input's gradient equal PyTorch's (seeded upstream grad)."""
    import torch

    arrays, params = data.draw(op_inputs(spec), label="inputs, params")
    inputs = leaves(arrays, np.float64)
    out = spec.tensor_fn(*inputs, **params)
    seed = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(seed)
    theirs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    torch_out = spec.torch_fn(*theirs, **params)
    torch_out.backward(torch.tensor(seed))
    rtol, atol = spec.torch_tolerance
    np.testing.assert_allclose(out.numpy(), torch_out.detach().numpy(), rtol=rtol, atol=atol)
    for leaf, t in zip(inputs, theirs):
        if t.requires_grad:
            np.testing.assert_allclose(leaf.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol)
