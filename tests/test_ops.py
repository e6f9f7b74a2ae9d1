"""Every differentiable op, driven by one table (OP_SPECS).

Each OpSpec gets two tests, on inputs drawn by tinygrad_lab.testing.strategies:
- float64: forward equals the NumPy reference, and gradcheck passes (central differences);
- float64 and float32: the output dtype is NumPy's (float32 stays float32), float32 values are
  close to NumPy's, and after backward every float input's gradient has its shape and dtype.

Adding an op = one OpSpec. A spec with parameters (axis, exponent, index, ...) supplies `cases`:
a strategy of (input shapes, keyword parameters) passed to both `tensor_fn` and `numpy_fn`.
OpSpec and the checks live in tinygrad_lab.testing.opspec; other families' tables
(tests/test_ops_*.py) run the same four checks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lab as tl
from tinygrad_lab import Tensor, ops
from tinygrad_lab.ops.elementwise import ACTIVATIONS
from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.opspec import (
    MAX_SIDE,
    SHAPES,
    Case,
    OpSpec,
    Params,
    Shape,
    axis_param,
    check_dtypes_and_grad_shapes,
    check_forward_and_gradcheck,
    check_matches_cpu_reference,
    check_matches_torch,
    reduce_params,
    with_params,
)


@st.composite
def _reshape_params(draw: st.DrawFn, s: Shape) -> Params:
    size = math.prod(s)
    new = list(draw(st.sampled_from([(size,), s[::-1], (1, *s), (*s, 1), (size, 1), (1, size, 1)])))
    if new and draw(st.booleans()):
        new[draw(st.integers(0, len(new) - 1))] = -1  # let reshape infer one side
    return {"shape": tuple(new)}


@st.composite
def _expand_params(draw: st.DrawFn, s: Shape) -> Params:
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    own = [
        draw(st.sampled_from([1, 2, 3, -1])) if n == 1 else draw(st.sampled_from([n, -1]))
        for n in s
    ]
    return {"shape": (*lead, *own)}


def _expanded(x: np.ndarray, shape: Shape) -> np.ndarray:
    lead = len(shape) - x.ndim
    target = tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
    return np.broadcast_to(x, target)


@st.composite
def _transpose_params(draw: st.DrawFn, s: Shape) -> Params:
    axis = st.integers(-len(s), len(s) - 1)
    return {"axis0": draw(axis), "axis1": draw(axis)}


@st.composite
def _advanced_index_params(draw: st.DrawFn, s: Shape) -> Params:
    """Integer-array indices; small index ranges and a constant fill make repeats common."""

    def ints(n: int, shape: Shape) -> np.ndarray:
        return draw(hnp.arrays(np.intp, shape, elements=st.integers(-n, n - 1)))

    idx_shape = draw(tst.shapes(min_dims=1, max_dims=2, max_side=4))
    modes = ["array", "list"] + (["second axis", "pair"] if len(s) >= 2 else [])
    mode = draw(st.sampled_from(modes))
    if mode == "array":
        index: Any = ints(s[0], idx_shape)
    elif mode == "list":
        index = [int(i) for i in ints(s[0], idx_shape[:1])]
    elif mode == "second axis":
        index = (slice(None), ints(s[1], idx_shape))
    else:
        index = (ints(s[0], idx_shape), ints(s[1], idx_shape))
    return {"index": index}


@st.composite
def _cat_cases(draw: st.DrawFn, n: int = 3) -> Case:
    base = draw(tst.shapes(min_dims=1, max_dims=3, max_side=4))
    axis = draw(st.integers(-len(base), len(base) - 1))
    k = axis % len(base)
    sizes = [draw(st.integers(0, 3)) for _ in range(n)]
    return tuple((*base[:k], m, *base[k + 1 :]) for m in sizes), {"axis": axis}


@st.composite
def _stack_cases(draw: st.DrawFn, n: int = 3) -> Case:
    s = draw(tst.shapes(max_dims=3, max_side=4))
    return (s,) * n, {"axis": draw(st.integers(-len(s) - 1, len(s)))}


def _pad_params(s: Shape) -> st.SearchStrategy[Params]:
    pair = st.tuples(st.integers(0, 2), st.integers(0, 2))
    return st.tuples(*[pair] * len(s)).map(lambda w: {"widths": w})


@st.composite
def _linear_cases(draw: st.DrawFn, bias: bool) -> Case:
    lead = draw(tst.shapes(max_dims=2, max_side=3))
    i, o = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shapes = ((*lead, i), (i, o), (o,)) if bias else ((*lead, i), (i, o))
    return shapes, {"activation": draw(st.sampled_from([None, *ACTIVATIONS]))}


@st.composite
def _cross_entropy_cases(draw: st.DrawFn) -> Case:
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    labels = draw(hnp.arrays(np.intp, (n,), elements=st.integers(0, c - 1)))
    return ((n, c),), {"labels": labels}


# --- NumPy references ---------------------------------------------------------------------------
# Python floats only (never np.float64 scalars) so float32 inputs stay float32 under NEP 50.
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _softplus(x: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    # log(1 + e^(beta x)) as written: inputs are bounded, and the reference should differ in form
    return np.where(beta * x > threshold, x, np.log(1 + np.exp(beta * x)) / beta)


# the activations PyTorch has besides: written as the papers do, to differ in form from ours
SELU = (1.6732632423543772848170429916717, 1.0507009873554804934193349852946)  # alpha, scale


def _leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    return np.where(x >= 0, x, negative_slope * x)


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * (np.exp(x) - 1))


def _hardtanh(x: np.ndarray, min_val: float = -1.0, max_val: float = 1.0) -> np.ndarray:
    return np.clip(x, min_val, max_val)


F_TORCH = torch.nn.functional
HARDTANH_BOUNDS = [{"min_val": -1.0, "max_val": 1.0}, {"min_val": -2.0, "max_val": 0.5}]


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x)  # no max shift: inputs are bounded, and the reference should differ in form
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _linear_ref(x: np.ndarray, w: np.ndarray, *b: np.ndarray, activation: str | None) -> Any:
    z = x @ w + (b[0] if b else 0)
    return z if activation is None else SPECS[activation].numpy_fn(z)  # default parameters


# where each fused activation, at its default parameters, is not differentiable
_FUSED_KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "selu": (0.0,), "hardtanh": (-1.0, 1.0),
                "relu6": (0.0, 6.0), "hardsigmoid": (-3.0, 3.0), "hardswish": (-3.0, 3.0)}


def _linear_valid(x: np.ndarray, w: np.ndarray, *b: np.ndarray, activation: str | None) -> bool:
    pre = x @ w + (b[0] if b else 0)
    kinks = _FUSED_KINKS.get(activation or "", ())
    return all(bool(np.all(np.abs(pre - k) > 1e-2)) for k in kinks)


def _cross_entropy_ref(x: np.ndarray, labels: np.ndarray) -> Any:
    return -_log_softmax(x, -1)[np.arange(len(labels)), labels].mean()


@st.composite
def _unbiased_var_cases(draw: st.DrawFn) -> Case:
    """axis None, one or several (not none), each reduced side at least 2 long: the default
    correction=1 divides by n - 1 (n = 1: tests/test_semantics.py)."""
    s = draw(tst.shapes(min_dims=1, max_side=MAX_SIDE))
    axis = draw(tst.axes(len(s)).filter(lambda a: a != ()))
    reduced = range(len(s)) if axis is None else {
        a % len(s) for a in ((axis,) if isinstance(axis, int) else axis)}
    s = tuple(max(n, 2) if i in reduced else n for i, n in enumerate(s))
    return (s,), {"axis": axis, "keepdims": draw(st.booleans())}


def _clip_ref(x: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    return np.clip(x, -np.inf if low is None else low, np.inf if high is None else high)


POSITIVE = (0.2, 3.0)
CLIP_BOUNDS = [{"low": -1.0, "high": 1.0}, {"low": 0.5, "high": None}, {"low": None, "high": -1.0}]

OP_SPECS = [
    # elementwise, binary (broadcasting)
    OpSpec("add", Tensor.add, np.add, 2),
    OpSpec("sub", Tensor.sub, np.subtract, 2),
    OpSpec("rsub", lambda x: 1.5 - x, lambda x: 1.5 - x),
    OpSpec("mul", Tensor.mul, np.multiply, 2),
    OpSpec("div", Tensor.div, np.divide, 2, kinks=(0.0,), margin=0.5),
    OpSpec("rdiv", lambda x: 1.5 / x, lambda x: 1.5 / x, kinks=(0.0,), margin=0.5),
    OpSpec("pow", Tensor.pow, np.power, 2, domain=(POSITIVE, (-2.0, 2.0))),
    OpSpec("rpow", lambda x: 2.0**x, lambda x: 2.0**x),
    OpSpec("maximum", Tensor.maximum, np.maximum, 2, separated=True),
    OpSpec("minimum", Tensor.minimum, np.minimum, 2, separated=True),
    OpSpec(
        "where",
        lambda c, a, b: tl.where(c, a, b),
        np.where,
        3,
        dtypes=("bool", "float", "float"),
    ),
    # elementwise, unary
    OpSpec("neg", Tensor.neg, np.negative),
    OpSpec(
        "pow_scalar",
        lambda x, exponent: x**exponent,
        lambda x, exponent: x**exponent,
        domain=POSITIVE,
        cases=with_params(
            SHAPES,
            lambda s: st.sampled_from([0.5, 1.5, -1.0, -2.5, 2.0]).map(lambda p: {"exponent": p}),
        ),
    ),
    OpSpec(
        "pow_scalar_int",
        lambda x, exponent: x**exponent,
        lambda x, exponent: x**exponent,
        cases=with_params(
            SHAPES, lambda s: st.sampled_from([0, 1, 2, 3]).map(lambda p: {"exponent": p})
        ),
    ),
    OpSpec("exp", Tensor.exp, np.exp),
    OpSpec("log", Tensor.log, np.log, domain=POSITIVE),
    OpSpec("sqrt", Tensor.sqrt, np.sqrt, domain=POSITIVE),
    OpSpec("abs", Tensor.abs, np.abs, kinks=(0.0,)),
    OpSpec("tanh", Tensor.tanh, np.tanh, domain=(-4.0, 4.0), torch_fn=torch.tanh),
    OpSpec("sigmoid", Tensor.sigmoid, _sigmoid, domain=(-6.0, 6.0), torch_fn=torch.sigmoid),
    OpSpec("relu", Tensor.relu, lambda x: np.maximum(x, 0), kinks=(0.0,), torch_fn=torch.relu),
    OpSpec("gelu", Tensor.gelu, _gelu, domain=(-4.0, 4.0),
           torch_fn=lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    OpSpec(
        "softplus",
        Tensor.softplus,
        _softplus,
        domain=(-4.0, 4.0),
        kinks=(0.5, 1.0, 2.0, 4.0),  # threshold / beta, where softplus switches to x
        cases=with_params(SHAPES, lambda s: st.fixed_dictionaries({
            "beta": st.sampled_from([1.0, 0.5, 2.0]),
            "threshold": st.sampled_from([20.0, 1.0, 4.0]),
        })),
        torch_fn=torch.nn.functional.softplus,
    ),
    OpSpec(
        "leaky_relu",
        Tensor.leaky_relu,
        _leaky_relu,
        kinks=(0.0,),
        cases=with_params(SHAPES, lambda s: st.sampled_from([0.01, 0.2, -0.5]).map(
            lambda k: {"negative_slope": k})),
        torch_fn=F_TORCH.leaky_relu,
    ),
    OpSpec(
        "elu",
        Tensor.elu,
        _elu,
        kinks=(0.0,),
        cases=with_params(SHAPES, lambda s: st.sampled_from([1.0, 0.5, 2.0]).map(
            lambda a: {"alpha": a})),
        torch_fn=F_TORCH.elu,
    ),
    OpSpec("selu", Tensor.selu, lambda x: SELU[1] * _elu(x, SELU[0]), kinks=(0.0,),
           torch_fn=F_TORCH.selu),
    OpSpec("silu", Tensor.silu, lambda x: x / (1 + np.exp(-x)), domain=(-6.0, 6.0),
           torch_fn=F_TORCH.silu),
    OpSpec("mish", Tensor.mish, lambda x: x * np.tanh(np.log(1 + np.exp(x))), domain=(-4.0, 4.0),
           torch_fn=F_TORCH.mish),
    OpSpec("softsign", Tensor.softsign, lambda x: x / (1 + np.abs(x)), torch_fn=F_TORCH.softsign),
    OpSpec(
        "hardtanh",
        Tensor.hardtanh,
        _hardtanh,
        kinks=(-2.0, -1.0, 0.5, 1.0),
        cases=with_params(SHAPES, lambda s: st.sampled_from(HARDTANH_BOUNDS)),
        torch_fn=F_TORCH.hardtanh,
    ),
    OpSpec("relu6", Tensor.relu6, lambda x: np.clip(x, 0, 6), domain=(-2.0, 8.0),
           kinks=(0.0, 6.0), torch_fn=F_TORCH.relu6),
    OpSpec("hardsigmoid", Tensor.hardsigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1),
           domain=(-5.0, 5.0), kinks=(-3.0, 3.0),
           # torch's hardsigmoid backward multiplies by 1/6 rounded to float32 (~3e-8 off in
           # float64); ours by 1/6 itself: compared with torch's exact composition instead
           torch_fn=lambda x: F_TORCH.relu6(x + 3) / 6),
    OpSpec("hardswish", Tensor.hardswish, lambda x: x * np.clip(x + 3, 0, 6) / 6,
           domain=(-5.0, 5.0), kinks=(-3.0, 3.0), torch_fn=F_TORCH.hardswish),
    OpSpec(
        "clip",
        lambda x, low, high: x.clip(low, high),
        _clip_ref,
        kinks=(-1.0, 0.5, 1.0),
        cases=with_params(SHAPES, lambda s: st.sampled_from(CLIP_BOUNDS)),
    ),
    OpSpec(
        "astype",  # a float32 round trip: the check needs a float64 output, and a wide eps
        lambda x: x.astype(np.float32).astype(np.float64),
        lambda x: x.astype(np.float32).astype(np.float64),
        gradcheck_kw={"eps": 1e-2, "atol": 1e-4, "rtol": 1e-3},
        keeps_dtype=False,
    ),
    # reductions
    OpSpec("sum", Tensor.sum, np.sum, cases=with_params(SHAPES, reduce_params)),
    OpSpec("mean", Tensor.mean, np.mean, cases=with_params(SHAPES, reduce_params)),
    # var: torch's default correction=1 (NumPy's ddof=1), then the biased correction=0 on
    # every shape, size-0 and size-1 axes included
    OpSpec("var", Tensor.var, lambda x, axis, keepdims: np.var(x, axis, keepdims=keepdims, ddof=1),
           cases=_unbiased_var_cases, torch_fn=lambda x, axis, keepdims:
           torch.var(x, dim=axis, keepdim=keepdims)),
    OpSpec("var_biased", lambda x, axis, keepdims: x.var(axis, keepdims, correction=0), np.var,
           cases=with_params(SHAPES, reduce_params)),
    OpSpec(
        "max",
        Tensor.max,
        np.max,
        cases=with_params(SHAPES, reduce_params),
        separated=True,
    ),
    OpSpec(
        "min",
        Tensor.min,
        np.min,
        cases=with_params(SHAPES, reduce_params),
        separated=True,
    ),
    # movement
    OpSpec(
        "reshape",
        lambda x, shape: x.reshape(*shape),
        lambda x, shape: x.reshape(shape),
        cases=with_params(SHAPES, _reshape_params),
    ),
    OpSpec(
        "permute",
        lambda x, axes: x.permute(*axes),
        np.transpose,
        cases=with_params(
            SHAPES, lambda s: st.permutations(range(len(s))).map(lambda p: {"axes": p})
        ),
    ),
    OpSpec(
        "transpose",
        lambda x, axis0, axis1: x.transpose(axis0, axis1),
        lambda x, axis0, axis1: np.swapaxes(x, axis0, axis1),
        cases=with_params(tst.shapes(min_dims=2, max_side=MAX_SIDE), _transpose_params),
    ),
    OpSpec("T", lambda x: x.T, lambda x: np.swapaxes(x, -1, -2) if x.ndim >= 2 else x),
    OpSpec(
        "expand",
        lambda x, shape: x.expand(*shape),
        _expanded,
        cases=with_params(tst.shapes(max_dims=3, max_side=3), _expand_params),
    ),
    OpSpec(
        "getitem_basic",
        lambda x, index: x[index],
        lambda x, index: x[index],
        cases=with_params(
            SHAPES,
            lambda s: hnp.basic_indices(s, allow_newaxis=True).map(lambda i: {"index": i}),
        ),
    ),
    OpSpec(
        "getitem_advanced",
        lambda x, index: x[index],
        lambda x, index: x[index],
        cases=with_params(
            tst.shapes(min_dims=1, max_dims=3, max_side=MAX_SIDE), _advanced_index_params
        ),
    ),
    OpSpec(
        "cat",
        lambda *xs, axis: tl.cat(xs, axis=axis),
        lambda *xs, axis: np.concatenate(xs, axis=axis),
        3,
        cases=_cat_cases,
    ),
    OpSpec(
        "stack",
        lambda *xs, axis: tl.stack(xs, axis=axis),
        lambda *xs, axis: np.stack(xs, axis=axis),
        3,
        cases=_stack_cases,
    ),
    OpSpec(
        "pad",
        lambda x, widths: x.pad(widths),
        lambda x, widths: np.pad(x, widths),
        cases=with_params(tst.shapes(min_dims=1, max_dims=3, max_side=MAX_SIDE), _pad_params),
    ),
    # linear algebra
    OpSpec(
        "matmul",
        Tensor.matmul,
        np.matmul,
        2,
        cases=lambda: tst.matmul_shapes().map(lambda ab: (ab, {})),
    ),
    OpSpec(
        "linear",
        lambda x, w, b, activation: ops.linalg.Linear.apply(x, w, b, activation=activation),
        _linear_ref,
        3,
        cases=lambda: _linear_cases(bias=True),
        valid=_linear_valid,
    ),
    OpSpec(
        "linear_nobias",
        lambda x, w, activation: ops.linalg.Linear.apply(x, w, activation=activation),
        _linear_ref,
        2,
        cases=lambda: _linear_cases(bias=False),
        valid=_linear_valid,
    ),
    # nn
    OpSpec(
        "softmax",
        Tensor.softmax,
        _softmax,
        cases=with_params(tst.shapes(min_dims=1, max_side=MAX_SIDE), axis_param),
    ),
    OpSpec(
        "log_softmax",
        Tensor.log_softmax,
        _log_softmax,
        cases=with_params(tst.shapes(min_dims=1, max_side=MAX_SIDE), axis_param),
    ),
    OpSpec(
        "softmax_cross_entropy",
        lambda x, labels: ops.nn.SoftmaxCrossEntropy.apply(x, labels=labels),
        _cross_entropy_ref,
        cases=_cross_entropy_cases,
    ),
]
SPEC_IDS = [spec.name for spec in OP_SPECS]
SPECS = {spec.name: spec for spec in OP_SPECS}


# Two hypothesis tests per spec rather than four: drawing inputs costs as much as checking them,
# and the ci profile's 100 examples for every op have to fit the CI time budget.
@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@given(data=st.data())
def test_op_forward_and_gradcheck(spec: OpSpec, data: st.DataObject, cpu_path) -> None:
    check_forward_and_gradcheck(spec, data)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@given(data=st.data())
def test_op_dtypes_and_grad_shapes(spec: OpSpec, data: st.DataObject) -> None:
    check_dtypes_and_grad_shapes(spec, data)


# A few examples per op and device: what the stand-in (and a GPU) must match is the CPU reference
# path, element for element; the hypothesis tests above cover the maths.
@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=5)
@given(data=st.data())
def test_op_on_each_device_matches_the_cpu_reference(spec: OpSpec, data: st.DataObject,
                                                     device) -> None:
    check_matches_cpu_reference(spec, data, device.device)


TORCH_SPECS = [spec for spec in OP_SPECS if spec.torch_fn is not None]


@pytest.mark.parametrize("spec", TORCH_SPECS, ids=[spec.name for spec in TORCH_SPECS])
@given(data=st.data())
def test_op_matches_torch(spec: OpSpec, data: st.DataObject) -> None:
    check_matches_torch(spec, data)


def test_every_activation_is_a_tensor_method_a_function_and_a_spec() -> None:
    """Read from the registry (ops/elementwise.py:ACTIVATIONS): each activation is a Tensor
    method, nn.functional's function of the same name, and an OpSpec row compared with torch."""
    from tinygrad_lab.nn import functional as F

    for name in ACTIVATIONS:
        assert getattr(F, name) is getattr(Tensor, name)
        assert name in SPECS and SPECS[name].torch_fn is not None, name
