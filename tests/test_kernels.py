"""Every registered CPU kernel equals the reference function of the same name.

For each name in CPU_KERNELS: hypothesis-drawn shapes (empty and size-1 included) in float32 and
float64, contiguous and strided (strided inputs go through the backend, which makes them
contiguous as real calls do); one large input per kernel so its thread-parallel branch runs; the
optimizer kernels against torch.optim and their references over several steps; and Tensor ops run
with kernels on and off, forward and gradients. Which kernels need a test is read from the
registry: a registered kernel without a reference or a test fails
`test_every_registered_kernel_has_a_reference_and_a_test`.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("numba")

import torch  # noqa: E402

import tinygrad_lab as tl  # noqa: E402
from tinygrad_lab import kernels_tool, optim  # noqa: E402
from tinygrad_lab.backends import REFERENCES, get_backend  # noqa: E402
from tinygrad_lab.backends.base import with_fallback  # noqa: E402
from tinygrad_lab.kernels import CPU_KERNELS, _common, lookup  # noqa: E402
from tinygrad_lab.nn import Parameter  # noqa: E402
from tinygrad_lab.ops.elementwise import ACTIVATIONS  # noqa: E402
from tinygrad_lab.ops.linalg import Linear  # noqa: E402
from tinygrad_lab.ops.nn import SoftmaxCrossEntropy  # noqa: E402

DTYPES = (np.float32, np.float64)
TOLERANCE = {np.float32: {"rtol": 2e-5, "atol": 2e-6}, np.float64: {"rtol": 1e-11, "atol": 1e-12}}
OPTIMIZERS = {"sgd_step": "SGD", "adam_step": "Adam", "adamw_step": "AdamW",
              "rmsprop_step": "RMSprop", "adagrad_step": "Adagrad"}
"""optimizer kernel -> the class of tinygrad_lab.optim (and of torch.optim) whose step it is."""
ACTIVATION_KERNELS = [n for a in ACTIVATIONS for n in (f"{a}_forward", f"{a}_backward")
                      if n in CPU_KERNELS]  # tanh_forward has none: NumPy's tanh wins


@pytest.fixture(autouse=True, scope="module")
def _kernels_on_small_inputs() -> Any:
    """Small inputs of the cheapest kernels normally go to the reference; test the kernels."""
    saved = _common.SMALL_TO_REFERENCE
    _common.SMALL_TO_REFERENCE = 0
    yield
    _common.SMALL_TO_REFERENCE = saved


def _kernel(name: str) -> Callable[..., Any]:
    """The kernel of `name` with the backend's fallback: where it answers NotImplemented (inputs
    it does not take), the reference runs. Arguments reach the kernel as given."""
    return with_fallback(lookup(name), REFERENCES[name])


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


class Huge(Large):
    """Inputs above PARALLEL_MIN_ONE_PASS, for the streaming kernels' thread-parallel branch."""

    def shape(self, min_dims: int = 0, max_dims: int = 3) -> tuple[int, ...]:
        return (1031, 1031) if max_dims >= 2 else ((1 << 20) + 7,)


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


def _activation(name: str) -> Callable[[Source], tuple[Any, ...]]:
    """An activation kernel's arrays (x; or g and y or x), then its float parameters (softplus'
    beta and threshold), each drawn among 0.25, 1 and 2 times the reference's default."""
    arrays = _unary if name.endswith("_forward") else _binary
    defaults = [p.default for p in inspect.signature(REFERENCES[name]).parameters.values()
                if isinstance(p.default, float)]
    return lambda src: (*arrays(src), *[d * src.choice([0.25, 1.0, 2.0]) for d in defaults])


def _bias_act(src: Source) -> tuple[Any, ...]:
    shape = src.shape(min_dims=1)
    bias = src.choice([True, False])
    b = src.array(shape[-1:]) if bias else None
    return src.array(shape), b, src.choice([None, *ACTIVATIONS])


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
    **{name: _activation(name) for name in ACTIVATION_KERNELS},
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


ONE_PASS = ["relu_forward", "relu_backward", "tanh_backward", "sigmoid_backward",
            "bias_act_forward", "sum_to_shape"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ONE_PASS)
def test_streaming_kernels_parallel_branch_matches_reference(name: str, dtype: Any) -> None:
    """Above PARALLEL_MIN_ONE_PASS (a constant compiled into the kernels) they run threaded."""
    args = BUILDERS[name](Huge(dtype))
    assert max(a.size for a in args if isinstance(a, np.ndarray)) >= _common.PARALLEL_MIN_ONE_PASS
    _check_kernel(name, args, _kernel(name), dtype)


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


def _named_in_other_test_files() -> set[str]:
    """Every string constant of the other tests/test_*.py files: a kernel tested there is named
    there (`REFERENCES["im2col"]`, `backend.resolve("masked_softmax_forward")`, ...)."""
    names: set[str] = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        if path.name != Path(__file__).name:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                      and isinstance(n.value, str)}
    return names


def test_every_registered_kernel_has_a_reference_and_a_test() -> None:
    """Read from the registry: each kernel has a reference of its name, and a test: a builder in
    BUILDERS, an entry of OPTIMIZERS, or a test file of its family that names it."""
    assert set(BUILDERS) | set(OPTIMIZERS) <= set(CPU_KERNELS), "a test for no registered kernel"
    elsewhere = _named_in_other_test_files()
    untested = [n for n in CPU_KERNELS if n not in BUILDERS and n not in OPTIMIZERS
                and n not in elsewhere]
    assert not untested, f"registered kernels without a test (add a builder to BUILDERS): " \
        f"{untested}"
    unreferenced = [n for n in CPU_KERNELS if n not in REFERENCES]
    assert not unreferenced, f"registered kernels without a reference function: {unreferenced}"


def test_kernel_modules_are_leaves() -> None:
    """Kernels import NumPy, Numba and each other, never the engine: falling back to the
    reference is the backend's decision (a kernel returns NotImplemented)."""
    folder = Path(lookup.__code__.co_filename).parent  # kernels/, wherever it is installed
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                engine = module.split(".")[0] == "tinygrad_lab" and not module.startswith(
                    "tinygrad_lab.kernels")
                assert not engine, f"{path.name} imports {module}"


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
        kernel = _kernel(name)
    _check_kernel(name, BUILDERS[name](Drawn(data, dtype, strided)), kernel, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_kernel_matches_reference_large(name: str, dtype: Any) -> None:
    for seed in range(8 if name == "bias_act_forward" else 1):  # most activations once or more
        _check_kernel(name, BUILDERS[name](Large(dtype, seed)), _kernel(name), dtype)


def test_kernels_keep_nan_and_signed_zero_like_numpy() -> None:
    x = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 3.0, -3.0], np.float32)
    cases = [(name, (x,)) for name in ACTIVATION_KERNELS if name.endswith("_forward")]
    cases += [("bias_act_forward", (x[None].copy(), None, act)) for act in ACTIVATIONS]
    for name, args in cases:
        with np.errstate(invalid="ignore"):  # gelu(-inf) is -inf * 0 = NaN in the reference too
            r = REFERENCES[name](*args)
            k = _kernel(name)(*args)  # second: bias_act_forward writes into its y
        np.testing.assert_array_equal(np.isnan(k), np.isnan(r), err_msg=name)
        # atol: gelu(-3) = 0.5 x (1 + tanh(u)) with tanh(u) = -0.9976 loses 9 bits to the
        # cancellation in both (float32) computations, so only an absolute bound at the inputs'
        # scale (3) means anything there
        np.testing.assert_allclose(k, r, rtol=1e-6, atol=16 * 3 * float(np.finfo(np.float32).eps),
                                   err_msg=name)
    assert np.signbit(_kernel("relu_forward")(x)[1])  # relu(-0.0) is -0.0, as np.maximum


def test_cross_entropy_bad_label_raises_index_error() -> None:
    kernel = _kernel("softmax_cross_entropy_forward")
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(IndexError):
        REFERENCES["softmax_cross_entropy_forward"](logits, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="out of bounds"):
        kernel(logits, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="out of bounds"):
        kernel(logits, np.array([0, -5, 1]))


# --- optimizers: each kernel against torch.optim and against its reference, step by step -------
def _optimizer_hyper(name: str, src: Source) -> dict[str, Any]:
    """Keyword arguments that tinygrad_lab.optim and torch.optim read alike."""
    wd = src.choice([0.0, 0.01])
    if name == "sgd_step":
        momentum = src.choice([0.0, 0.9])
        dampening = src.choice([0.0, 0.3]) if momentum else 0.0
        nesterov = bool(momentum and not dampening and src.choice([False, True]))
        return {"lr": 0.1, "momentum": momentum, "dampening": dampening, "weight_decay": wd,
                "nesterov": nesterov}
    if name in ("adam_step", "adamw_step"):
        return {"lr": 1e-2, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": wd}
    if name == "rmsprop_step":
        return {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": wd,
                "momentum": src.choice([0.0, 0.9])}
    return {"lr": 0.1, "eps": 1e-10, "weight_decay": wd}


def _our_steps(name: str, hyper: dict[str, Any], param: Any, grads: list[Any],
               kernels_on: bool) -> list[Any]:
    """The parameter after each step of tinygrad_lab.optim, on the kernel or reference path."""
    with tl.use_kernels() if kernels_on else tl.reference():
        assert get_backend("cpu").is_kernel(name) == kernels_on
        p = Parameter(param.copy())
        opt = getattr(optim, OPTIMIZERS[name])([p], **hyper)
        after = []
        for g in grads:
            p.grad = tl.Tensor(g)
            opt.step()
            after.append(p.numpy().copy())
    return after


def _torch_steps(name: str, hyper: dict[str, Any], param: Any, grads: list[Any]) -> list[Any]:
    p = torch.tensor(param.copy(), requires_grad=True)
    opt = getattr(torch.optim, OPTIMIZERS[name])([p], **hyper)
    after = []
    for g in grads:
        p.grad = torch.tensor(g.copy())
        opt.step()
        after.append(p.detach().numpy().copy())
    return after


def _check_optimizer(name: str, src: Source, n: int) -> None:
    hyper = _optimizer_hyper(name, src)
    param, grads = src.array((n,)), [src.array((n,)) for _ in range(4)]
    kernel = _our_steps(name, hyper, param, grads, kernels_on=True)
    reference = _our_steps(name, hyper, param, grads, kernels_on=False)
    theirs = _torch_steps(name, hyper, param, grads)
    for step, (k, r, t) in enumerate(zip(kernel, reference, theirs), start=1):
        assert k.dtype == param.dtype
        where = f"{name} {hyper}, step {step}"
        np.testing.assert_allclose(k, t, **TOLERANCE[src.dtype], err_msg=f"torch.optim: {where}")
        np.testing.assert_allclose(k, r, **TOLERANCE[src.dtype], err_msg=f"reference: {where}")


@pytest.mark.parametrize("name", OPTIMIZERS)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(0, 40))
def test_optimizer_kernel_matches_torch(name: str, data: st.DataObject, dtype: Any, n: int) -> None:
    _check_optimizer(name, Drawn(data, dtype, strided=False), n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_kernel_matches_torch_large(name: str, dtype: Any) -> None:
    for seed in range(3):  # a few draws of momentum / weight decay / Nesterov
        _check_optimizer(name, Large(dtype, seed), 50_000)


def test_optimizer_kernel_leaves_strided_params_to_the_reference() -> None:
    """A strided param is not the kernel's to update (a copy would lose the step): the kernel
    answers NotImplemented, and the fallback runs the reference, which updates the view."""
    base = np.ones(8, np.float32)
    param = base[::2]
    args = (param, np.ones(4, np.float32), np.zeros(4, np.float32), 0.1, 1e-10, 0.0)
    assert lookup("adagrad_step")(*args) is NotImplemented
    np.testing.assert_array_equal(base, 1)  # untouched
    _kernel("adagrad_step")(*args)
    np.testing.assert_allclose(base, [0.9, 1] * 4, rtol=1e-6)  # p -= lr g / sqrt(g^2)


# --- end to end: Tensor ops with kernels on and off ---------------------------------------------
def _run(fn: Callable[..., Any], arrays: list[Any], kernels_on: bool) -> list[Any]:
    with tl.use_kernels() if kernels_on else tl.reference():
        tensors = [tl.Tensor(a, requires_grad=True) for a in arrays]
        out = fn(*tensors)
        seed = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
        out.backward(seed if out.shape else None)
        return [out.numpy()] + [t.grad.numpy() for t in tensors]


def _activation_op(a: str) -> Callable[..., Any]:
    return lambda x: getattr(x, a)()  # Tensor.<a>, default parameters


def _linear_op(a: str) -> Callable[..., Any]:
    return lambda x, w, b: Linear.apply(x, w, b, activation=a)


END_TO_END: dict[str, tuple[Callable[..., Any], list[str]]] = {
    **{a: (_activation_op(a), [n for n in ACTIVATION_KERNELS if n.startswith(f"{a}_")])
       for a in ACTIVATIONS},
    **{f"linear_{a}": (_linear_op(a), ["bias_act_forward", "sum_to_shape"]) for a in ACTIVATIONS},
    "softmax": (lambda x: x.softmax(-1), ["softmax_forward", "softmax_backward"]),
    "log_softmax": (lambda x: x.log_softmax(-1), ["log_softmax_forward", "log_softmax_backward"]),
    "bias_add": (lambda x, b: (x + b).tanh(), ["sum_to_shape"]),
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
    # float32 gradients summed over hundreds of rows differ from path to path by rounding: each
    # path is then held to the float64 answer, the kernels no further from it than the reference
    truth = _run(fn, [a.astype(np.float64) for a in arrays], kernels_on=False)
    for k, r, t in zip(with_kernels, reference, truth):
        assert k.dtype == r.dtype and k.shape == r.shape
        if dtype == np.float64:
            np.testing.assert_allclose(k, r, rtol=TOLERANCE[dtype]["rtol"] * 5,
                                       atol=TOLERANCE[dtype]["atol"] * 5)
            continue
        k_err, r_err = np.abs(k - t).max(), np.abs(r - t).max()
        scale = np.abs(t).max()
        assert k_err <= 1.5 * r_err + TOLERANCE[dtype]["atol"] * 5, (k_err, r_err)
        assert k_err <= TOLERANCE[dtype]["rtol"] * 5 * scale + TOLERANCE[dtype]["atol"] * 5


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
