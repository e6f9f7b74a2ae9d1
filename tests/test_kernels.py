"""Every registered CPU kernel equals the reference function of the same name.

For each name in CPU_KERNELS: hypothesis-drawn shapes (empty and size-1 included) in float32 and
float64, contiguous and strided (strided inputs go through the backend, which makes them
contiguous as real calls do); one large input per kernel so its thread-parallel branch runs; the
optimizer kernels against plain NumPy versions of PyTorch's updates over several steps; and Tensor
ops run with kernels on and off, forward and gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("numba")

import tinygrad_lab as tl  # noqa: E402
from tinygrad_lab import kernels_tool  # noqa: E402
from tinygrad_lab.backends import REFERENCES, get_backend  # noqa: E402
from tinygrad_lab.kernels import CPU_KERNELS, _common, lookup  # noqa: E402
from tinygrad_lab.ops.linalg import Linear  # noqa: E402
from tinygrad_lab.ops.nn import SoftmaxCrossEntropy  # noqa: E402

DTYPES = (np.float32, np.float64)
TOLERANCE = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-11, "atol": 1e-12}}
OPTIMIZERS = ("sgd_step", "adam_step", "adamw_step", "rmsprop_step", "adagrad_step")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")


@pytest.fixture(autouse=True, scope="module")
def _kernels_on_small_inputs() -> Any:
    """Small inputs of the cheapest kernels normally go to the reference; test the kernels."""
    saved = _common.SMALL_TO_REFERENCE
    _common.SMALL_TO_REFERENCE = 0
    yield
    _common.SMALL_TO_REFERENCE = saved


# --- where test arrays come from: hypothesis (small, any shape) or NumPy (large) ----------------
class Drawn:
    """Arrays and choices drawn by hypothesis; `strided` makes every array a non-contiguous view."""

    def __init__(self, data: st.DataObject, dtype: Any, strided: bool) -> None:
        self.data, self.dtype, self.strided = data, dtype, strided

    def shape(self, min_dims: int = 0, max_dims: int = 3) -> tuple[int, ...]:
        return self.data.draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0,
                                               max_side=5))

    def array(self, shape: tuple[int, ...], low: float = -4.0, high: float = 4.0) -> Any:
        width = 32 if self.dtype == np.float32 else 64
        floats = st.floats(low, high, width=width, allow_subnormal=False)
        if not self.strided:
            return self.data.draw(hnp.arrays(self.dtype, shape, elements=floats))
        pair = self.data.draw(hnp.arrays(self.dtype, (*shape, 2), elements=floats))
        return pair[..., 0]  # (*shape), stride 2 elements

    def labels(self, n: int, classes: int) -> Any:
        dtype = self.data.draw(st.sampled_from([np.int64, np.int32, np.uint8]))
        low = 0 if dtype == np.uint8 else -classes  # negative labels count from the end
        return self.data.draw(hnp.arrays(dtype, (n,), elements=st.integers(low, classes - 1)))

    def choice(self, options: list[Any]) -> Any:
        return self.data.draw(st.sampled_from(options))


class Large:
    """Inputs large enough for each kernel's thread-parallel branch (> 2**15 elements)."""

    def __init__(self, dtype: Any, seed: int = 0) -> None:
        self.dtype, self.rng = dtype, np.random.default_rng(seed)

    def shape(self, min_dims: int = 0, max_dims: int = 3) -> tuple[int, ...]:
        return (160, 257) if max_dims >= 2 else (41_000,)

    def array(self, shape: tuple[int, ...], low: float = -4.0, high: float = 4.0) -> Any:
        return self.rng.uniform(low, high, shape).astype(self.dtype)

    def labels(self, n: int, classes: int) -> Any:
        return self.rng.integers(0, classes, n)

    def choice(self, options: list[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]


Source = Drawn | Large


# --- one argument builder per kernel ------------------------------------------------------------
def _unary(src: Source) -> tuple[Any, ...]:
    return (src.array(src.shape()),)


def _binary(src: Source) -> tuple[Any, ...]:
    shape = src.shape()
    return src.array(shape), src.array(shape)


def _rows(src: Source) -> tuple[Any, ...]:
    return (src.array(src.shape(min_dims=1)), src.choice([-1, "last"]))


def _rows_backward(src: Source) -> tuple[Any, ...]:
    shape = src.shape(min_dims=1)
    return src.array(shape), src.array(shape, 0.0, 1.0), src.choice([-1, "last"])


def _bias_act(src: Source) -> tuple[Any, ...]:
    shape = src.shape(min_dims=1)
    bias = src.choice([True, False])
    b = src.array(shape[-1:]) if bias else None
    return src.array(shape), b, src.choice([None, "relu", "tanh", "sigmoid"])


def _cross_entropy(src: Source) -> tuple[Any, ...]:
    n, classes = (src.shape(2, 2) if isinstance(src, Large) else
                  (src.choice(list(range(6))), src.choice(list(range(1, 7)))))
    return src.array((n, classes), -8.0, 8.0), src.labels(n, classes)


def _sum_to_shape(src: Source) -> tuple[Any, ...]:
    """g and a shape it could have been broadcast from: the kernel's (..., O) -> (O,) or
    (1, O), and other reductions that go to the reference."""
    gshape = src.shape(min_dims=1)
    if isinstance(src, Large):
        return src.array(gshape), gshape[-1:]
    kept = src.choice(list(range(len(gshape) + 1)))
    target = tuple(s if src.choice([True, True, False]) else 1 for s in gshape[len(gshape) - kept:])
    return src.array(gshape), target


BUILDERS: dict[str, Callable[[Source], tuple[Any, ...]]] = {
    **{f"{a}_forward": _unary for a in ACTIVATIONS if a != "tanh"},  # NumPy's tanh wins
    **{f"{a}_backward": _binary for a in ACTIVATIONS},
    "bias_act_forward": _bias_act,
    "softmax_forward": _rows,
    "log_softmax_forward": _rows,
    "softmax_backward": _rows_backward,
    "log_softmax_backward": _rows_backward,
    "softmax_cross_entropy_forward": _cross_entropy,
    "sum_to_shape": _sum_to_shape,
}


def _resolve_axis(args: tuple[Any, ...]) -> tuple[Any, ...]:
    # "last" stands for the positive last axis, which Tensor.softmax passes (axis % ndim)
    return tuple(args[0].ndim - 1 if isinstance(a, str) and a == "last" else a for a in args)


REDUCING = {  # kernels whose outputs sum over an axis: how many terms each sum has
    "softmax_forward": lambda args: args[0].shape[-1],
    "log_softmax_forward": lambda args: args[0].shape[-1],
    "softmax_backward": lambda args: args[0].shape[-1],
    "log_softmax_backward": lambda args: args[0].shape[-1],
    "softmax_cross_entropy_forward": lambda args: args[0].shape[1] + args[0].shape[0],
    "sum_to_shape": lambda args: args[0].size // max(int(np.prod(args[1])), 1),
}


def _tolerance(name: str, args: tuple[Any, ...], dtype: Any) -> dict[str, float]:
    """rtol per dtype; atol for values near zero, growing with the input scale and, where the
    output is a sum of n terms, with sqrt(n) (the reference sums in the input dtype, the kernels
    in float64 or in another order)."""
    arrays = [a for a in args if isinstance(a, np.ndarray) and a.size and a.dtype.kind == "f"]
    scale = max([1.0] + [float(np.abs(a).max()) for a in arrays])
    terms = REDUCING[name](args) if name in REDUCING and args[0].size else 1
    atol = 16 * float(np.finfo(dtype).eps) * scale * float(np.sqrt(max(terms, 1)))
    return {"rtol": TOLERANCE[dtype]["rtol"], "atol": max(atol, TOLERANCE[dtype]["atol"])}


def _assert_same(kernel_out: Any, ref_out: Any, tolerance: dict[str, float]) -> None:
    if isinstance(ref_out, tuple):
        assert isinstance(kernel_out, tuple) and len(kernel_out) == len(ref_out)
        for k, r in zip(kernel_out, ref_out):
            _assert_same(k, r, tolerance)
        return
    k, r = np.asarray(kernel_out), np.asarray(ref_out)
    assert isinstance(kernel_out, (np.ndarray, np.generic))  # NumPy gives scalars for 0-d input
    assert k.dtype == r.dtype, (k.dtype, r.dtype)
    assert k.shape == r.shape, (k.shape, r.shape)
    np.testing.assert_allclose(k, r, **tolerance)


def _check_kernel(name: str, args: tuple[Any, ...], kernel: Callable[..., Any], dtype: Any) -> None:
    """kernel(*args) equals REFERENCES[name](*args), or raises the same error the reference does."""
    args = _resolve_axis(args)
    before = [a.copy() for a in args if isinstance(a, np.ndarray)]
    try:
        expected = REFERENCES[name](*args)
    except Exception as error:  # e.g. softmax over an empty axis
        with pytest.raises(type(error)):
            kernel(*args)
        return
    tolerance = _tolerance(name, args, dtype)
    got = kernel(*args)  # after the reference: bias_act_forward may write into its y
    _assert_same(got, expected, tolerance)
    if name != "bias_act_forward":  # kernels write only their own new outputs
        after = [a for a in args if isinstance(a, np.ndarray)]
        for b, a in zip(before, after):
            np.testing.assert_array_equal(a, b)


TESTED_HERE = ("activations", "softmax", "reduce", "optim")  # kernel modules this file covers


def test_every_registered_kernel_is_tested() -> None:
    here = {name for name, target in CPU_KERNELS.items() if target.split(":")[0] in TESTED_HERE}
    assert here == set(BUILDERS) | set(OPTIMIZERS)
    for name in BUILDERS:
        assert name in REFERENCES, f"kernel {name!r} has no reference function"


@pytest.mark.parametrize("name", sorted(BUILDERS))
@given(data=st.data(), dtype=st.sampled_from(DTYPES), strided=st.booleans())
def test_kernel_matches_reference(
    name: str, data: st.DataObject, dtype: Any, strided: bool
) -> None:
    if strided:  # through the backend, which makes array arguments C-contiguous as real calls do
        with tl.use_kernels():
            backend = get_backend("cpu")
            assert backend.is_kernel(name)
            kernel = backend.resolve(name)
    else:
        kernel = lookup(name, "cpu")
    _check_kernel(name, BUILDERS[name](Drawn(data, dtype, strided)), kernel, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_kernel_matches_reference_large(name: str, dtype: Any) -> None:
    for seed in range(4 if name == "bias_act_forward" else 1):  # each activation once or more
        _check_kernel(name, BUILDERS[name](Large(dtype, seed)), lookup(name, "cpu"), dtype)


def test_kernels_keep_nan_and_signed_zero_like_numpy() -> None:
    x = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 3.0, -3.0], np.float32)
    cases = [(name, (x,)) for name in ("relu_forward", "sigmoid_forward", "gelu_forward")]
    cases += [("bias_act_forward", (x[None].copy(), None, act)) for act in ("tanh", "sigmoid")]
    for name, args in cases:
        with np.errstate(invalid="ignore"):  # gelu(-inf) is -inf * 0 = NaN in the reference too
            r = REFERENCES[name](*args)
            k = lookup(name, "cpu")(*args)  # second: bias_act_forward writes into its y
        np.testing.assert_array_equal(np.isnan(k), np.isnan(r), err_msg=name)
        np.testing.assert_allclose(k, r, rtol=1e-6, err_msg=name)
    assert np.signbit(lookup("relu_forward", "cpu")(x)[1])  # relu(-0.0) is -0.0, as np.maximum


def test_cross_entropy_bad_label_raises_index_error() -> None:
    kernel = lookup("softmax_cross_entropy_forward", "cpu")
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(IndexError):
        REFERENCES["softmax_cross_entropy_forward"](logits, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="out of bounds"):
        kernel(logits, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="out of bounds"):
        kernel(logits, np.array([0, -5, 1]))


# --- optimizers: plain NumPy versions of PyTorch's single-tensor updates ------------------------
def ref_sgd_step(param, grad, velocity, lr, momentum, dampening, weight_decay, nesterov,
                 first_step):
    g = grad + weight_decay * param if weight_decay else grad
    if momentum:
        if first_step:
            velocity[...] = g
        else:
            velocity *= momentum
            velocity += (1 - dampening) * g
        g = g + momentum * velocity if nesterov else velocity
    param -= lr * g


def ref_adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - beta2**step) + eps
    param -= (lr / (1 - beta1**step)) * (m / denom)


def ref_adamw_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    param *= 1 - lr * weight_decay
    ref_adam_step(param, grad, m, v, lr, beta1, beta2, eps, 0.0, step)


def ref_rmsprop_step(param, grad, square_avg, lr, alpha, eps, weight_decay, momentum, buf):
    g = grad + weight_decay * param if weight_decay else grad
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    avg = np.sqrt(square_avg) + eps
    if momentum:
        buf *= momentum
        buf += g / avg
        param -= lr * buf
    else:
        param -= lr * (g / avg)


def ref_adagrad_step(param, grad, sum_sq, lr, eps, weight_decay):
    g = grad + weight_decay * param if weight_decay else grad
    sum_sq += g * g
    param -= lr * (g / (np.sqrt(sum_sq) + eps))


OPTIMIZER_REFS = {
    "sgd_step": ref_sgd_step,
    "adam_step": ref_adam_step,
    "adamw_step": ref_adamw_step,
    "rmsprop_step": ref_rmsprop_step,
    "adagrad_step": ref_adagrad_step,
}


def _optimizer_case(name: str, src: Source, n: int) -> tuple[list[Any], tuple[Any, ...], int]:
    """(arrays updated in place: param then state, hyperparameters, state count)."""
    param = src.array((n,))
    zeros = np.zeros_like(param)
    empty = np.zeros(0, param.dtype)
    wd = src.choice([0.0, 0.01])
    if name == "sgd_step":
        momentum = src.choice([0.0, 0.9])
        velocity = zeros.copy() if momentum else empty
        return [param, velocity], (0.1, momentum, src.choice([0.0, 0.3]), wd,
                                   src.choice([False, True])), 1
    if name in ("adam_step", "adamw_step"):
        return [param, zeros.copy(), zeros.copy()], (1e-2, 0.9, 0.999, 1e-8, wd), 2
    if name == "rmsprop_step":
        momentum = src.choice([0.0, 0.9])
        return [param, zeros.copy(), zeros.copy() if momentum else empty], (1e-2, 0.99, 1e-8,
                                                                            wd, momentum), 2
    return [param, zeros.copy()], (0.1, 1e-10, wd), 1


def _optimizer_call(name: str, fn: Callable[..., Any], arrays: list[Any], grad: Any,
                    hyper: tuple[Any, ...], step: int) -> None:
    param, *state = arrays
    if name == "sgd_step":
        fn(param, grad, state[0], *hyper, step == 1)
    elif name in ("adam_step", "adamw_step"):
        fn(param, grad, state[0], state[1], *hyper, step)
    elif name == "rmsprop_step":
        fn(param, grad, state[0], *hyper, state[1])
    else:
        fn(param, grad, state[0], *hyper)


def _check_optimizer(name: str, src: Source, n: int, reference: Callable[..., Any]) -> None:
    ours, hyper, _ = _optimizer_case(name, src, n)
    theirs = [a.copy() for a in ours]
    kernel = lookup(name, "cpu")
    for step in range(1, 5):
        grad = src.array((n,))
        _optimizer_call(name, kernel, ours, grad, hyper, step)
        _optimizer_call(name, reference, theirs, grad, hyper, step)
        for a, b in zip(ours, theirs):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, **TOLERANCE[src.dtype], err_msg=f"{name} step {step}")


@pytest.mark.parametrize("name", OPTIMIZERS)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(0, 40))
def test_optimizer_kernel_matches_numpy(name: str, data: st.DataObject, dtype: Any, n: int) -> None:
    _check_optimizer(name, Drawn(data, dtype, strided=False), n, OPTIMIZER_REFS[name])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_kernel_matches_numpy_large(name: str, dtype: Any) -> None:
    for seed in range(3):  # a few draws of momentum / weight decay / Nesterov
        _check_optimizer(name, Large(dtype, seed), 50_000, OPTIMIZER_REFS[name])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_kernel_matches_registered_reference(name: str) -> None:
    """Once tinygrad_lab.optim registers its references, they and the kernels must agree."""
    with contextlib.suppress(ImportError):
        import tinygrad_lab.optim  # noqa: F401
    if name not in REFERENCES:
        pytest.skip(f"no reference registered for {name} yet")
    for dtype in DTYPES:
        for seed in range(4):
            _check_optimizer(name, Large(dtype, seed), 1000, REFERENCES[name])


def test_optimizer_kernel_leaves_strided_params_to_the_reference() -> None:
    """A strided param is not the kernel's to update (a copy would lose the step): it goes to
    the registered reference, or fails loudly when there is none."""
    param = np.ones(8, np.float32)[::2]
    grad = np.ones(4, np.float32)
    sum_sq = np.zeros(4, np.float32)
    kernel = lookup("adagrad_step", "cpu")
    if "adagrad_step" in REFERENCES:
        kernel(param, grad, sum_sq, 0.1, 1e-10, 0.0)
        assert np.all(param < 1)
    else:
        with pytest.raises(ValueError, match="C-contiguous"):
            kernel(param, grad, sum_sq, 0.1, 1e-10, 0.0)


# --- end to end: Tensor ops with kernels on and off ---------------------------------------------
def _run(fn: Callable[..., Any], arrays: list[Any], kernels_on: bool) -> list[Any]:
    with tl.use_kernels() if kernels_on else tl.reference():
        tensors = [tl.Tensor(a, requires_grad=True) for a in arrays]
        out = fn(*tensors)
        seed = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
        out.backward(seed if out.shape else None)
        return [out.numpy()] + [t.grad.numpy() for t in tensors]


END_TO_END: dict[str, tuple[Callable[..., Any], list[str]]] = {
    "relu": (lambda x: x.relu(), ["relu_forward", "relu_backward"]),
    "tanh": (lambda x: x.tanh(), ["tanh_backward"]),
    "sigmoid": (lambda x: x.sigmoid(), ["sigmoid_forward", "sigmoid_backward"]),
    "gelu": (lambda x: x.gelu(), ["gelu_forward", "gelu_backward"]),
    "softmax": (lambda x: x.softmax(-1), ["softmax_forward", "softmax_backward"]),
    "log_softmax": (lambda x: x.log_softmax(-1), ["log_softmax_forward", "log_softmax_backward"]),
    "bias_add": (lambda x, b: (x + b).tanh(), ["sum_to_shape"]),
    "linear_relu": (lambda x, w, b: Linear.apply(x, w, b, activation="relu"),
                    ["bias_act_forward", "sum_to_shape"]),
    "linear_sigmoid": (lambda x, w, b: Linear.apply(x, w, b, activation="sigmoid"),
                       ["bias_act_forward"]),
    "cross_entropy": (lambda x: SoftmaxCrossEntropy.apply(x, labels=np.arange(len(x)) % 7),
                      ["softmax_cross_entropy_forward"]),
}


@pytest.mark.parametrize("rows", [3, 200])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(END_TO_END))
def test_tensor_ops_same_with_and_without_kernels(op: str, dtype: Any, rows: int) -> None:
    fn, names = END_TO_END[op]
    with tl.use_kernels():
        assert all(get_backend("cpu").is_kernel(n) for n in names)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 257)).astype(dtype)
    arrays = [x]
    if op == "bias_add":
        arrays.append(rng.standard_normal(257).astype(dtype))
    if op.startswith("linear"):
        arrays += [rng.standard_normal((257, 64)).astype(dtype) / 16,
                   rng.standard_normal(64).astype(dtype)]
    with_kernels = _run(fn, arrays, kernels_on=True)
    reference = _run(fn, arrays, kernels_on=False)
    for k, r in zip(with_kernels, reference):
        assert k.dtype == r.dtype and k.shape == r.shape
        np.testing.assert_allclose(k, r, rtol=TOLERANCE[dtype]["rtol"] * 5,
                                   atol=TOLERANCE[dtype]["atol"] * 5)


def test_warm_compiles_every_kernel() -> None:
    from tinygrad_lab.kernels import activations

    ours = set(BUILDERS) | set(OPTIMIZERS)
    threshold = _common.SMALL_TO_REFERENCE
    results = kernels_tool.warm(verbose=False, names=ours)
    assert [name for name, _ in results] == [name for name in CPU_KERNELS if name in ours]
    assert _common.SMALL_TO_REFERENCE == threshold
    # small examples reach the Numba kernel even where small inputs normally go to the reference
    assert len(activations._relu_forward.signatures) >= 2  # float32 and float64
    assert all(seconds >= 0 for _, seconds in results)
