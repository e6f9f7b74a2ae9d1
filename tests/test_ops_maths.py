"""The maths ops (ops/maths.py) and the exact GELU and GLU, by the four checks of
tinygrad_lab.testing.opspec, plus what a table cannot say: dtypes of integer inputs, PyTorch's
sign rules for remainders and rounded division, comparisons and logic, erf's accuracy.

Shapes include size-0 and size-1 dimensions. Examples are capped (the ci profile would run 100
per row and check) to keep this file's CI time small; tests/test_ops.py is the model table.
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
from tinygrad_lab import Tensor
from tinygrad_lab.nn import functional as F
from tinygrad_lab.ops.maths import erf
from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.opspec import (
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

SHAPES0 = tst.shapes(max_side=4, min_side=0)  # size-0 and size-1 sides included
POSITIVE = (0.2, 3.0)
INTEGERS = tuple(float(k) for k in range(-3, 4))  # where floor, ceil and trunc jump
HALVES = tuple(k + 0.5 for k in range(-4, 4))  # where round jumps


def _unary() -> Any:
    return SHAPES0.map(lambda s: ((s,), {}))


def _binary(max_side: int = 4) -> Any:
    return lambda: tst.broadcastable_shapes(2, min_side=0, max_side=max_side).map(
        lambda ss: (ss, {}))


def _quotient_off_integers(a: np.ndarray, b: np.ndarray) -> bool:
    """a / b at least 1e-2 from an integer: where fmod, remainder and rounded division jump."""
    q = a / b
    return bool(np.all(np.abs(q - np.round(q)) > 1e-2))


def _np_erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _np_gelu_exact(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + _np_erf(x / math.sqrt(2)))


@st.composite
def _glu_cases(draw: st.DrawFn) -> Case:
    s = list(draw(tst.shapes(min_dims=1, max_dims=3, max_side=3, min_side=0)))
    dim = draw(st.integers(-len(s), len(s) - 1))
    s[dim] = draw(st.sampled_from([0, 2, 4]))
    return (tuple(s),), {"dim": dim}


def _tri_params(s: Shape) -> st.SearchStrategy[Params]:
    return st.integers(-2, 2).map(lambda k: {"diagonal": k})


def _np_glu(x: np.ndarray, dim: int) -> np.ndarray:
    a, b = np.split(x, 2, axis=dim)
    return a / (1 + np.exp(-b))


OP_SPECS = [
    # trigonometric and hyperbolic
    OpSpec("sin", Tensor.sin, np.sin, cases=_unary, torch_fn=torch.sin),
    OpSpec("cos", Tensor.cos, np.cos, cases=_unary, torch_fn=torch.cos),
    OpSpec("tan", Tensor.tan, np.tan, domain=(-1.3, 1.3), cases=_unary, torch_fn=torch.tan),
    OpSpec("asin", Tensor.asin, np.arcsin, domain=(-0.9, 0.9), cases=_unary, torch_fn=torch.asin),
    OpSpec("acos", Tensor.acos, np.arccos, domain=(-0.9, 0.9), cases=_unary, torch_fn=torch.acos),
    OpSpec("atan", Tensor.atan, np.arctan, cases=_unary, torch_fn=torch.atan),
    OpSpec("sinh", Tensor.sinh, np.sinh, cases=_unary, torch_fn=torch.sinh),
    OpSpec("cosh", Tensor.cosh, np.cosh, cases=_unary, torch_fn=torch.cosh),
    # powers, logarithms, exponentials, erf
    OpSpec("reciprocal", Tensor.reciprocal, lambda x: 1 / x, kinks=(0.0,), margin=0.5,
           cases=_unary, torch_fn=torch.reciprocal),
    OpSpec("rsqrt", Tensor.rsqrt, lambda x: 1 / np.sqrt(x), domain=POSITIVE, cases=_unary,
           torch_fn=torch.rsqrt),
    OpSpec("log2", Tensor.log2, np.log2, domain=POSITIVE, cases=_unary, torch_fn=torch.log2),
    OpSpec("log1p", Tensor.log1p, np.log1p, domain=(-0.8, 3.0), cases=_unary,
           torch_fn=torch.log1p),
    OpSpec("exp2", Tensor.exp2, np.exp2, cases=_unary, torch_fn=torch.exp2),
    OpSpec("expm1", Tensor.expm1, np.expm1, cases=_unary, torch_fn=torch.expm1),
    OpSpec("erf", Tensor.erf, _np_erf, cases=_unary, torch_fn=torch.erf),
    # piecewise constant: zero gradient
    OpSpec("floor", Tensor.floor, np.floor, kinks=INTEGERS, cases=_unary, torch_fn=torch.floor),
    OpSpec("ceil", Tensor.ceil, np.ceil, kinks=INTEGERS, cases=_unary, torch_fn=torch.ceil),
    OpSpec("trunc", Tensor.trunc, np.trunc, kinks=INTEGERS, cases=_unary, torch_fn=torch.trunc),
    OpSpec("round", Tensor.round, np.round, kinks=HALVES, cases=_unary, torch_fn=torch.round),
    OpSpec("sign", Tensor.sign, np.sign, kinks=(0.0,), cases=_unary, torch_fn=torch.sign),
    # binary (broadcasting)
    OpSpec("atan2", Tensor.atan2, np.arctan2, 2, kinks=(0.0,), margin=0.3, cases=_binary(),
           torch_fn=torch.atan2),
    OpSpec("fmod", Tensor.fmod, np.fmod, 2, domain=((-3.0, 3.0), (-2.0, 2.0)), kinks=(0.0,),
           margin=0.5, cases=_binary(2), valid=_quotient_off_integers, torch_fn=torch.fmod),
    OpSpec("remainder", Tensor.remainder, np.remainder, 2, domain=((-3.0, 3.0), (-2.0, 2.0)),
           kinks=(0.0,), margin=0.5, cases=_binary(2), valid=_quotient_off_integers,
           torch_fn=torch.remainder),
    OpSpec("floor_divide", Tensor.floor_divide, lambda a, b: np.floor(a / b), 2,
           domain=((-3.0, 3.0), (-2.0, 2.0)), kinks=(0.0,), margin=0.5, cases=_binary(2),
           valid=_quotient_off_integers,
           torch_fn=lambda a, b: torch.div(a, b, rounding_mode="floor")),
    OpSpec("div_trunc", lambda a, b: tl.div(a, b, rounding_mode="trunc"),
           lambda a, b: np.trunc(a / b), 2, domain=((-3.0, 3.0), (-2.0, 2.0)), kinks=(0.0,),
           margin=0.5, cases=_binary(2), valid=_quotient_off_integers,
           torch_fn=lambda a, b: torch.div(a, b, rounding_mode="trunc")),
    # triangular parts
    OpSpec("tril", lambda x, diagonal: x.tril(diagonal), lambda x, diagonal: np.tril(x, diagonal),
           cases=with_params(tst.shapes(min_dims=2, max_dims=3, max_side=4, min_side=0),
                             _tri_params),
           torch_fn=lambda x, diagonal: torch.tril(x, diagonal)),
    OpSpec("triu", lambda x, diagonal: x.triu(diagonal), lambda x, diagonal: np.triu(x, diagonal),
           cases=with_params(tst.shapes(min_dims=2, max_dims=3, max_side=4, min_side=0),
                             _tri_params),
           torch_fn=lambda x, diagonal: torch.triu(x, diagonal)),
    # activations with no fused form
    OpSpec("gelu_none", lambda x: F.gelu(x, approximate="none"), _np_gelu_exact,
           domain=(-4.0, 4.0), cases=_unary, torch_fn=torch.nn.functional.gelu),
    OpSpec("glu", lambda x, dim: F.glu(x, dim), _np_glu, cases=_glu_cases,
           torch_fn=lambda x, dim: torch.nn.functional.glu(x, dim)),
]
SPEC_IDS = [spec.name for spec in OP_SPECS]
EXAMPLES = 20  # per row and check: the ci profile's 100 would take this file past its budget


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_op_forward_and_gradcheck(spec: OpSpec, data: st.DataObject, cpu_path) -> None:
    check_forward_and_gradcheck(spec, data)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_op_dtypes_and_grad_shapes(spec: OpSpec, data: st.DataObject) -> None:
    check_dtypes_and_grad_shapes(spec, data)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=5)
@given(data=st.data())
def test_op_on_each_device_matches_the_cpu_reference(spec: OpSpec, data: st.DataObject,
                                                     device) -> None:
    check_matches_cpu_reference(spec, data, device.device)


@pytest.mark.parametrize("spec", OP_SPECS, ids=SPEC_IDS)
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_op_matches_torch(spec: OpSpec, data: st.DataObject) -> None:
    check_matches_torch(spec, data)


# --- erf --------------------------------------------------------------------------------------
def test_erf_is_float64_accurate_against_math_erf() -> None:
    x = np.concatenate([np.linspace(-8, 8, 40001), np.geomspace(1e-300, 30, 2000),
                        [0.46875, 0.46876, 4.0, 4.0001, 26.5, 27.0, 40.0]])
    x = np.concatenate([x, -x])
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf(x), want, rtol=2e-15, atol=0)
    special = erf(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]))
    np.testing.assert_array_equal(special[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(special[1]) and np.isnan(special[4])
    assert erf(x.astype(np.float32)).dtype == np.float32


# --- dtypes: integers into float functions give float32; rounding keeps integers ---------------
FLOAT_FUNCTIONS = ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "reciprocal",
                   "rsqrt", "log2", "log1p", "exp2", "expm1", "erf"]


@pytest.mark.parametrize("name", FLOAT_FUNCTIONS)
def test_integer_input_to_a_float_function_gives_float32_as_torch(name: str) -> None:
    ints = np.array([[1], [1]])  # inside every domain: no NumPy warnings
    ours = getattr(tl, name)(Tensor(ints))
    theirs = getattr(torch, name)(torch.tensor(ints))
    assert ours.dtype == np.float32 and theirs.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ["floor", "ceil", "round", "trunc", "sign"])
def test_rounding_an_integer_tensor_keeps_it_as_torch(name: str) -> None:
    ints = np.array([-3, 0, 5])
    ours, theirs = getattr(tl, name)(Tensor(ints)), getattr(torch, name)(torch.tensor(ints))
    assert ours.dtype == np.int64
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_round_with_decimals_matches_torch() -> None:
    x = np.array([1.2345, -2.5, 0.125, 1234.5678, 2.675])
    for decimals in (0, 1, 2, -1):
        np.testing.assert_array_equal(Tensor(x).round(decimals).numpy(),
                                      torch.tensor(x).round(decimals=decimals).numpy())


def test_rounding_sends_zero_gradients() -> None:
    x = Tensor([0.3, -1.7, 2.5], requires_grad=True)
    (x.floor() + x.ceil() + x.round() + x.trunc() + x.sign()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3, np.float32))


def test_isnan_isinf_isfinite_match_torch() -> None:
    x = np.array([0.0, np.nan, np.inf, -np.inf, -1.5])
    for name in ("isnan", "isinf", "isfinite"):
        ours = getattr(Tensor(x, requires_grad=True), name)()
        assert ours.dtype == np.bool_ and not ours.requires_grad
        np.testing.assert_array_equal(ours.numpy(), getattr(torch, name)(torch.tensor(x)).numpy())
    assert not tl.isnan(Tensor(np.array([1, 2]))).numpy().any()


# --- remainders and rounded division: PyTorch's sign rules, integers stay integers -------------
_INT_PAIRS = st.tuples(st.integers(-20, 20), st.integers(-6, 6).filter(bool))


@settings(max_examples=EXAMPLES)
@given(pairs=st.lists(_INT_PAIRS, min_size=1, max_size=8), as_float=st.booleans())
def test_remainders_and_rounded_division_match_torch(pairs: list[tuple[int, int]],
                                                      as_float: bool) -> None:
    a, b = (np.array(v, np.float64 if as_float else np.int64) for v in zip(*pairs))
    ta, tb = torch.tensor(a), torch.tensor(b)
    cases = [
        (Tensor(a).fmod(Tensor(b)), torch.fmod(ta, tb)),  # the sign of the dividend
        (Tensor(a).remainder(Tensor(b)), torch.remainder(ta, tb)),  # the sign of the divisor
        (Tensor(a) % Tensor(b), ta % tb),
        (Tensor(a) // Tensor(b), ta // tb),
        (tl.div(Tensor(a), Tensor(b), rounding_mode="trunc"), torch.div(ta, tb,
                                                                        rounding_mode="trunc")),
        (tl.div(Tensor(a), Tensor(b), rounding_mode="floor"), torch.div(ta, tb,
                                                                        rounding_mode="floor")),
        (tl.div(Tensor(a), Tensor(b)), torch.div(ta, tb)),
        (Tensor(a).div(Tensor(b), rounding_mode="floor"), ta.div(tb, rounding_mode="floor")),
    ]
    for ours, theirs in cases:
        assert ours.dtype == np.dtype(str(theirs.dtype).removeprefix("torch."))
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_scalar_operands_and_reflected_operators() -> None:
    x = Tensor(np.array([-7, 7]))
    np.testing.assert_array_equal((x % 3).numpy(), [2, 1])
    np.testing.assert_array_equal((10 % Tensor(np.array([3, -3]))).numpy(), [1, -2])
    np.testing.assert_array_equal((x // 2).numpy(), [-4, 3])
    np.testing.assert_array_equal((9 // Tensor(np.array([2, -2]))).numpy(), [4, -5])
    np.testing.assert_array_equal(x.fmod(3).numpy(), [-1, 1])


def test_integer_division_by_zero_raises_as_torch() -> None:
    a, b = Tensor(np.array([1, 2])), Tensor(np.array([1, 0]))
    for fn in (lambda: a // b, lambda: a % b, lambda: a.fmod(b),
               lambda: tl.div(a, b, rounding_mode="trunc")):
        with pytest.raises(ZeroDivisionError):
            fn()


def test_bad_rounding_mode_is_named() -> None:
    with pytest.raises(ValueError, match="rounding_mode"):
        tl.div(Tensor([1.0]), 2.0, rounding_mode="round")


# --- comparisons and logic --------------------------------------------------------------------
_SMALL = hnp.arrays(np.float64, st.integers(0, 5), elements=st.sampled_from([-1.0, 0.0, 2.0]))


@settings(max_examples=EXAMPLES)
@given(a=_SMALL, b=st.sampled_from([-1.0, 0.0, 2.0]))
def test_named_comparisons_and_logic_match_torch(a: np.ndarray, b: float) -> None:
    x, tx = Tensor(a), torch.tensor(a)
    other = Tensor(np.full(a.shape, b))
    for name in ("eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less",
                 "less_equal", "not_equal"):
        want = getattr(torch, name)(tx, b).numpy()
        for got in (getattr(x, name)(b), getattr(tl, name)(x, other)):
            assert got.dtype == np.bool_
            np.testing.assert_array_equal(got.numpy(), want)
    for name in ("logical_and", "logical_or", "logical_xor"):
        want = getattr(torch, name)(tx, torch.tensor(np.full(a.shape, b))).numpy()
        np.testing.assert_array_equal(getattr(tl, name)(x, other).numpy(), want)
    np.testing.assert_array_equal(x.logical_not().numpy(), torch.logical_not(tx).numpy())
    assert x.equal(Tensor(a)) and (a.size == 0 or not x.equal(x + 1.0))


def test_isclose_and_allclose_match_torch_defaults() -> None:
    a = np.array([1.0, 1.0, np.inf, np.nan, -np.inf, 0.0, 1e-9])
    b = np.array([1.0 + 1e-6, 1.0 + 1e-4, np.inf, np.nan, np.inf, 1e-9, 0.0])
    for kw in ({}, {"equal_nan": True}, {"rtol": 1e-3, "atol": 0.0}):
        np.testing.assert_array_equal(Tensor(a).isclose(Tensor(b), **kw).numpy(),
                                      torch.isclose(torch.tensor(a), torch.tensor(b),
                                                    **kw).numpy())
    assert tl.allclose(Tensor(a[:2]), Tensor(b[:2]), rtol=1e-3)
    assert not Tensor(a).allclose(Tensor(b), equal_nan=True)
    with pytest.raises(ValueError, match="rtol"):
        Tensor(a).isclose(Tensor(b), rtol=-1.0)


# --- activations: what the table does not cover ----------------------------------------------
def test_gelu_keeps_the_tanh_form_by_default_and_names_bad_modes() -> None:
    x = Tensor(np.linspace(-3, 3, 7))
    np.testing.assert_array_equal(x.gelu().numpy(), x.gelu("tanh").numpy())
    want = torch.nn.functional.gelu(torch.tensor(x.numpy()), approximate="tanh").numpy()
    np.testing.assert_allclose(x.gelu().numpy(), want, rtol=1e-6)
    with pytest.raises(ValueError, match="approximate"):
        x.gelu("erf")


def test_glu_hardtanh_and_swish_arguments() -> None:
    with pytest.raises(ValueError, match="odd"):
        F.glu(Tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match="0-d"):
        Tensor(1.0).glu()
    with pytest.raises(ValueError, match="min_val"):
        Tensor([0.0]).hardtanh(1.0, -1.0)
    x = Tensor([-1.0, 2.0])
    np.testing.assert_array_equal(F.swish(x).numpy(), x.silu().numpy())


def test_triangles_need_two_dimensions() -> None:
    with pytest.raises(ValueError, match="2 dimensions"):
        Tensor([1.0, 2.0]).tril()
    with pytest.raises(TypeError, match="diagonal"):
        tl.triu(Tensor(np.ones((2, 2))), 1.5)  # type: ignore[arg-type]


def test_free_functions_are_the_methods() -> None:
    for name in ("sin", "erf", "atan2", "fmod", "remainder", "isclose", "logical_and", "floor"):
        assert getattr(tl, name) is getattr(Tensor, name)


NEW_ACTIVATIONS = ["leaky_relu", "elu", "selu", "silu", "mish", "softsign", "hardtanh", "relu6",
                   "hardsigmoid", "hardswish"]


@pytest.mark.parametrize("name", NEW_ACTIVATIONS)
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), ()])
def test_activations_on_empty_and_single_element_shapes(name: str, shape: tuple[int, ...]) -> None:
    a = np.linspace(-2.0, 2.0, int(np.prod(shape))).reshape(shape) + 0.1
    x = Tensor(a, requires_grad=True)
    y = getattr(F, name)(x)
    y.backward(np.ones(shape))
    tx = torch.tensor(a, requires_grad=True)
    ty = getattr(torch.nn.functional, name)(tx)
    ty.backward(torch.ones(shape, dtype=torch.float64))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-7)
    assert getattr(tl.nn.functional, name) is getattr(Tensor, name)
