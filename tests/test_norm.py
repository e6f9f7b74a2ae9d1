"""LayerNorm and RMSNorm: forward against direct NumPy formulas, float64 gradcheck on hypothesis
shapes (reference path and kernels), kernels against references (float32/float64, size 1,
non-contiguous), the layers against torch.nn.LayerNorm / torch.nn.RMSNorm."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import Tensor, nn
from tinygrad_lab.backends import REFERENCES, get_backend
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import check_forward, gradcheck
from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.devices import DeviceCase


# --- direct NumPy formulas (written differently from the references) ------------------------------
def np_layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b


def np_rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * w


@st.composite
def norm_inputs(draw: st.DrawFn, dtype: type = np.float64) -> tuple[np.ndarray, ...]:
    """x (..., C) with rows spread out (so rstd stays moderate), w and b (C,)."""
    lead = draw(tst.shapes(max_dims=2, max_side=3))
    c = draw(st.integers(1, 6))
    x = draw(tst.arrays((*lead, c), dtype))
    if c > 1:  # a nearly constant row makes 1/sqrt(var + eps) huge and differences inaccurate
        x = x + np.linspace(-1.0, 1.0, c, dtype=dtype)
    w = draw(tst.arrays((c,), dtype, 0.5, 2.0))
    b = draw(tst.arrays((c,), dtype))
    return x, w, b


# --- forward and gradients -----------------------------------------------------------------------
@given(inputs=norm_inputs())
def test_layer_norm_forward_matches_numpy(inputs, cpu_path):
    x, w, b = inputs
    check_forward(lambda x, w, b: F.layer_norm(x, w, b, 1e-5),
                  lambda x, w, b: np_layer_norm(x, w, b, 1e-5), x, w, b, atol=1e-10)


@given(inputs=norm_inputs())
def test_rms_norm_forward_matches_numpy(inputs, cpu_path):
    x, w, _ = inputs
    check_forward(lambda x, w: F.rms_norm(x, w, 1e-6), lambda x, w: np_rms_norm(x, w, 1e-6),
                  x, w, atol=1e-10)


@given(inputs=norm_inputs())
def test_layer_norm_gradcheck(inputs, cpu_path):
    assert gradcheck(lambda x, w, b: F.layer_norm(x, w, b, 1e-5), *inputs)


@given(inputs=norm_inputs())
def test_rms_norm_gradcheck(inputs, cpu_path):
    x, w, _ = inputs
    assert gradcheck(lambda x, w: F.rms_norm(x, w, 1e-6), x, w)


def test_norm_grad_shapes_and_dtypes_float32(cpu_path):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 8)).astype(np.float32), requires_grad=True)
    ln, rms = nn.LayerNorm(8), nn.RMSNorm(8)
    (ln(x).sum() + (rms(x) * rms(x)).sum()).backward()
    for t in (x, ln.weight, ln.bias, rms.weight):
        assert t.grad.shape == t.shape and t.grad.dtype == np.float32


def test_layer_norm_output_is_normalised():
    x = Tensor(np.random.default_rng(1).standard_normal((4, 16)) * 5 + 3)
    y = nn.LayerNorm(16, dtype=np.float64)(x).numpy()
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1, rtol=1e-5)


def test_norm_shape_errors():
    with pytest.raises(ValueError, match=r"\(2, 5\).*\(4,\)"):
        nn.LayerNorm(4)(Tensor(np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match="normalised shape"):
        nn.RMSNorm((2, 3))
    assert sorted(nn.LayerNorm(3).state_dict()) == ["bias", "weight"]
    assert list(nn.RMSNorm(3).state_dict()) == ["weight"]


# --- kernels against references ------------------------------------------------------------------
KERNEL_SHAPES = [(1, 1), (1, 7), (5, 1), (3, 4, 33), (64, 128), (257, 96)]


def _noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values in a strided view (every other element of a bigger array)."""
    big = np.empty((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous or a.shape[-1] == 1
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", KERNEL_SHAPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_norm_kernels_match_references(dtype, shape, contiguous):
    backend = get_backend("cpu")
    with tl.use_kernels():
        names = ["layer_norm_forward", "layer_norm_backward", "rms_norm_forward",
                 "rms_norm_backward"]
        kern = {n: backend.resolve(n) for n in names}
        assert all(backend.is_kernel(n) for n in names)
    rng = np.random.default_rng(sum(shape))
    c = shape[-1]
    x, g = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    w, b = (rng.standard_normal(c).astype(dtype) for _ in range(2))
    prep = (lambda a: a) if contiguous else _noncontiguous
    tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-11}

    def same(got: tuple, want: tuple) -> None:
        for k, r in zip(got, want):
            assert k.dtype == r.dtype == dtype and k.shape == r.shape
            np.testing.assert_allclose(k, r, **tol)

    want = REFERENCES["layer_norm_forward"](x, w, b, 1e-5)
    same(kern["layer_norm_forward"](prep(x), prep(w[None])[0], b, 1e-5), want)
    _, mean, rstd = want
    same(kern["layer_norm_backward"](prep(g), prep(x), w, mean, rstd),
         REFERENCES["layer_norm_backward"](g, x, w, mean, rstd))
    want = REFERENCES["rms_norm_forward"](x, w, 1e-6)
    same(kern["rms_norm_forward"](prep(x), w, 1e-6), want)
    same(kern["rms_norm_backward"](prep(g), x, w, want[1]),
         REFERENCES["rms_norm_backward"](g, x, w, want[1]))


def test_norm_kernel_falls_back_on_mixed_dtypes():
    from tinygrad_lab.kernels import layernorm

    x = np.ones((2, 3), np.float32)
    w = np.ones(3, np.float64)
    assert layernorm.layer_norm_forward(x, w, w, 1e-5) is NotImplemented  # not the kernel's
    with tl.use_kernels():
        y, _, _ = get_backend("cpu").call("layer_norm_forward", x, w, w, 1e-5)  # the reference's
    np.testing.assert_allclose(y, np.ones((2, 3)))


# --- against PyTorch -----------------------------------------------------------------------------
def _torch_layer_case(ours: nn.Module, theirs, x: np.ndarray, bias: bool,
                      device: DeviceCase) -> None:
    import torch

    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 1.5, x.shape[-1])
    ours.weight.data[...] = w
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(w))
    if bias:
        b = rng.standard_normal(x.shape[-1])
        ours.bias.data[...] = b
        with torch.no_grad():
            theirs.bias.copy_(torch.from_numpy(b))
    seed = rng.standard_normal(x.shape)
    ours.to(device.device)
    xt = device.tensor(x, requires_grad=True)
    y = ours(xt)
    y.backward(seed)
    xr = torch.tensor(x, requires_grad=True)
    yr = theirs(xr)
    yr.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(y.numpy(), yr.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-9,
                               atol=1e-10)
    if bias:
        np.testing.assert_allclose(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), rtol=1e-9)


def test_layer_norm_matches_torch(device):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 5, 16)) * 2 + 1
    _torch_layer_case(nn.LayerNorm(16, eps=1e-5, dtype=np.float64),
                      torch.nn.LayerNorm(16, eps=1e-5, dtype=torch.float64), x, True, device)


def test_rms_norm_matches_torch(device):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((3, 5, 16)) * 2 + 1
    _torch_layer_case(nn.RMSNorm(16, eps=1e-6, dtype=np.float64),
                      torch.nn.RMSNorm(16, eps=1e-6, dtype=torch.float64), x, False, device)
