"""The CNN family: conv2d, max/avg pooling, batch norm and dropout.

- forward against direct NumPy loops, and float64 central-difference gradients (gradcheck), on
  hypothesis-drawn shapes, strides, paddings, dilations and groups;
- every conv/pool kernel against its NumPy reference (float32/float64, size-1, empty and
  non-contiguous inputs);
- each layer's output and input/parameter gradients against torch.nn given the same weights;
- one tiny CNN that overfits a batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import nn, optim
from tinygrad_lab.backends import REFERENCES, get_backend
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import gradcheck
from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.devices import DeviceCase

Pair = tuple[int, int]


# --- direct NumPy references: loops over output pixels ---------------------------------------
def out_size(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def naive_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: Pair,
                 padding: Pair, dilation: Pair, groups: int) -> np.ndarray:
    """The definition, summed over groups and kernel offsets (no im2col):
    y[n, o, t, u] = b[o] + sum_{c, i, j} w[o, c, i, j] x_pad[n, c, t*SH + i*DH, u*SW + j*DW]."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(wd, kw, stride[1], padding[1], dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    y = np.zeros((n, o, oh, ow), dtype=x.dtype)
    og = o // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                top, left = i * dilation[0], j * dilation[1]
                patch = xp[:, g * cg:(g + 1) * cg, top:top + stride[0] * (oh - 1) + 1:stride[0],
                           left:left + stride[1] * (ow - 1) + 1:stride[1]]  # (N, C/G, OH, OW)
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch,
                                                       w[g * og:(g + 1) * og, :, i, j])
    if b is not None:
        y += b.reshape(1, o, 1, 1)
    return y


def np_act(z: np.ndarray, activation: str | None) -> np.ndarray:
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-z))
    return z


def naive_pool(x: np.ndarray, k: Pair, s: Pair, p: Pair, kind: str) -> np.ndarray:
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0]), out_size(w, k[1], s[1], p[1])
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (p[0],) * 2, (p[1],) * 2), constant_values=fill)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    for t in range(oh):
        for u in range(ow):
            win = xp[:, :, t * s[0]:t * s[0] + k[0], u * s[1]:u * s[1] + k[1]]
            y[:, :, t, u] = win.max(axis=(2, 3)) if kind == "max" else win.mean(axis=(2, 3))
    return y


# --- strategies --------------------------------------------------------------------------------
@st.composite
def conv_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Small conv2d problems: batch 1-2, channels 1-4 with groups dividing both, spatial 3-7,
    kernel 1-3, stride 1-2, padding 0-2, dilation 1-2, bias on/off; output at least 1x1."""
    groups = draw(st.sampled_from([1, 1, 2]))
    c = groups * draw(st.integers(1, 4 // groups))
    o = groups * draw(st.integers(1, 4 // groups))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(3, 7)), draw(st.integers(3, 7))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    assume(out_size(h, k[0], s[0], p[0], d[0]) >= 1 and out_size(w, k[1], s[1], p[1], d[1]) >= 1)
    x = draw(tst.arrays((n, c, h, w)))
    weight = draw(tst.arrays((o, c // groups, *k)))
    bias = draw(tst.arrays((o,))) if draw(st.booleans()) else None
    activation = draw(st.sampled_from([None, None, "relu", "tanh", "sigmoid"]))
    case = {"x": x, "w": weight, "b": bias, "stride": s, "padding": p, "dilation": d,
            "groups": groups, "activation": activation}
    if activation == "relu":  # keep the pre-activations off relu's kink, for gradcheck
        assume(np.abs(naive_conv2d(x, weight, bias, s, p, d, groups)).min() > 1e-3)
    return case


@st.composite
def pool_cases(draw: st.DrawFn, separated: bool = False) -> dict[str, Any]:
    """Small pooling problems: kernel 1-3, stride 1-3 (None = the kernel), padding <= k // 2."""
    n, c, h, w = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 6)),
                  draw(st.integers(1, 6)))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    s = k if stride is None else stride
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    assume(out_size(h, k[0], s[0], p[0]) >= 1 and out_size(w, k[1], s[1], p[1]) >= 1)
    shape = (n, c, h, w)
    # max pooling: values pairwise apart, so no tie sits within gradcheck's step of another
    x = draw(tst.separated_arrays(shape))[0] if separated else draw(tst.arrays(shape))
    return {"x": x, "kernel_size": k, "stride": stride, "padding": p, "s": s}


def conv_fn(case: dict[str, Any]):
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups", "activation")}
    if case["b"] is None:
        return (lambda x, w: F.conv2d(x, w, None, **kw)), (case["x"], case["w"])
    return (lambda x, w, b: F.conv2d(x, w, b, **kw)), (case["x"], case["w"], case["b"])


# --- conv2d ------------------------------------------------------------------------------------
@given(case=conv_cases())
def test_conv2d_forward_matches_direct_loops(cpu_path, case):
    fn, inputs = conv_fn(case)
    got = fn(*[tl.Tensor(a) for a in inputs]).numpy()
    want = np_act(naive_conv2d(case["x"], case["w"], case["b"], case["stride"], case["padding"],
                               case["dilation"], case["groups"]), case["activation"])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@given(case=conv_cases())
def test_conv2d_gradcheck(case):
    fn, inputs = conv_fn(case)
    assert gradcheck(fn, *inputs)


def test_conv2d_float32_stays_float32(cpu_path):
    rng = np.random.default_rng(0)
    x = tl.Tensor(rng.standard_normal((2, 3, 6, 5)).astype(np.float32), requires_grad=True)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    y = conv(x)
    y.sum().backward()
    assert y.dtype == np.float32 and y.shape == (2, 4, 6, 5)
    assert x.grad.dtype == np.float32 and conv.weight.grad.dtype == np.float32
    want = naive_conv2d(x.numpy().astype(np.float64), conv.weight.numpy().astype(np.float64),
                        conv.bias.numpy().astype(np.float64), (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)


def test_conv2d_layer_init_and_errors():
    tl.manual_seed(0)
    conv = nn.Conv2d(6, 4, (3, 2), groups=2)
    bound = 1 / np.sqrt(3 * 3 * 2)  # fan_in = C/groups * KH * KW
    assert conv.weight.shape == (4, 3, 3, 2) and conv.bias.shape == (4,)
    for p in (conv.weight, conv.bias):
        assert np.abs(p.numpy()).max() <= bound and np.abs(p.numpy()).max() > bound / 2
    assert nn.Conv2d(2, 2, 1, bias=False).bias is None
    assert [name for name, _ in conv.named_parameters()] == ["weight", "bias"]
    with pytest.raises(ValueError, match="channels"):
        conv(tl.Tensor(np.zeros((1, 5, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="too small"):
        conv(tl.Tensor(np.zeros((1, 6, 2, 4), np.float32)))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        conv(tl.Tensor(np.zeros((6, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match="activation"):
        nn.Conv2d(3, 4, 3, activation="swish")  # every name in ACTIVATIONS is fine


# --- pooling -----------------------------------------------------------------------------------
@given(case=pool_cases())
def test_pools_forward_match_direct_loops(cpu_path, case):
    args = (case["kernel_size"], case["stride"], case["padding"])
    got_max = F.max_pool2d(tl.Tensor(case["x"]), *args).numpy()
    got_avg = F.avg_pool2d(tl.Tensor(case["x"]), *args).numpy()
    k, s, p = case["kernel_size"], case["s"], case["padding"]
    np.testing.assert_array_equal(got_max, naive_pool(case["x"], k, s, p, "max"))
    np.testing.assert_allclose(got_avg, naive_pool(case["x"], k, s, p, "avg"), rtol=1e-12,
                               atol=1e-12)


@given(case=pool_cases(separated=True))
def test_max_pool2d_gradcheck(case):
    args = (case["kernel_size"], case["stride"], case["padding"])
    assert gradcheck(lambda x: F.max_pool2d(x, *args), case["x"])


@given(case=pool_cases())
def test_avg_pool2d_gradcheck(case):
    args = (case["kernel_size"], case["stride"], case["padding"])
    assert gradcheck(lambda x: F.avg_pool2d(x, *args), case["x"])


def test_max_pool2d_sends_a_tie_to_the_first_maximum_only():
    x = tl.Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[[[1.0, 0.0], [0.0, 0.0]]]])


def test_pool_errors():
    x = tl.Tensor(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="too small"):
        F.avg_pool2d(x, 5)
    assert nn.MaxPool2d(2)(x).shape == (1, 1, 2, 2)
    assert nn.AvgPool2d(3, stride=1, padding=1)(x).shape == (1, 1, 4, 4)


# --- batch norm --------------------------------------------------------------------------------
@st.composite
def bn_inputs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = draw(st.integers(1, 3))
    shape = draw(st.sampled_from([(3, c), (2, c, 3), (2, c, 2, 2)]))
    return draw(tst.arrays(shape)), draw(tst.arrays((c,))), draw(tst.arrays((c,)))


@given(inputs=bn_inputs())
def test_batch_norm_train_gradcheck(inputs):
    x, w, b = inputs
    assume(x.reshape(x.shape[0], x.shape[1], -1).std(axis=(0, 2)).min() > 0.1)  # not constant
    assert gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), x, w, b)


@given(inputs=bn_inputs())
def test_batch_norm_eval_gradcheck(inputs):
    x, w, b = inputs
    c = x.shape[1]
    mean, var = tl.Tensor(np.linspace(-1, 1, c)), tl.Tensor(np.linspace(0.5, 2, c))
    assert gradcheck(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False), x, w, b)


def test_batch_norm_running_stats_and_modes():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 5, 2)) * 2 + 1
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    y = bn(tl.Tensor(x)).numpy()
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    shape = (1, 3, 1, 1)
    np.testing.assert_allclose(y, (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5),
                               atol=1e-12)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, atol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1),
                               atol=1e-12)
    assert sorted(bn.state_dict()) == ["bias", "running_mean", "running_var", "weight"]
    bn.eval()
    before = bn.running_mean.numpy().copy()
    y_eval = bn(tl.Tensor(x)).numpy()
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)
    want = (x - before.reshape(shape)) / np.sqrt(bn.running_var.numpy().reshape(shape) + 1e-5)
    np.testing.assert_allclose(y_eval, want, atol=1e-12)
    with pytest.raises(ValueError, match="more than 1 value"):
        nn.BatchNorm1d(3).train()(tl.Tensor(np.ones((1, 3), np.float32)))
    with pytest.raises(ValueError, match="channels"):
        nn.BatchNorm1d(3)(tl.Tensor(np.ones((4, 2), np.float32)))


# --- dropout -----------------------------------------------------------------------------------
def test_dropout_mask_statistics_and_gradient():
    p, keep = 0.3, 0.7
    tl.manual_seed(0)
    x = tl.Tensor(np.ones((200, 500)), requires_grad=True)
    y = F.dropout(x, p)
    y.sum().backward()
    values = y.numpy()
    kept = values != 0
    assert set(np.unique(values)) <= {0.0, 1 / keep}
    sigma = np.sqrt(keep * (1 - keep) / values.size)
    assert abs(kept.mean() - keep) < 5 * sigma
    np.testing.assert_allclose(x.grad.numpy(), kept / keep)  # the gradient is the mask / keep
    tl.manual_seed(0)
    np.testing.assert_array_equal(F.dropout(x, p).numpy(), values)  # seeded by tl.manual_seed


def test_dropout_gradcheck_with_a_fixed_mask():
    def fn(x: tl.Tensor) -> tl.Tensor:
        tl.manual_seed(3)  # the same mask on every call
        return F.dropout(x, 0.4) * x

    assert gradcheck(fn, np.random.default_rng(0).standard_normal((4, 6)))


def test_dropout_layer_modes():
    x = tl.Tensor(np.ones((3, 4), np.float32))
    drop = nn.Dropout(0.5)
    assert drop(x).dtype == np.float32
    drop.eval()
    assert drop(x) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nn.Dropout(1.5)


# --- kernels against their references ---------------------------------------------------------
CONV_PARAMS = [  # (x shape, kernel, stride, padding, dilation)
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 4, 9, 8), (3, 2), (2, 1), (2, 0), (1, 2)),
    ((3, 2, 8, 9), (2, 3), (1, 2), (1, 1), (2, 1)),
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1)),  # size 1
    ((1, 1, 2, 2), (3, 3), (1, 1), (1, 1), (1, 1)),  # one window, mostly padding
    ((0, 2, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1)),  # empty batch
    ((64, 8, 13, 13), (3, 3), (1, 1), (0, 0), (1, 1)),  # large enough for the threaded loops
]
POOL_PARAMS = [  # (x shape, kernel, stride, padding)
    ((2, 3, 7, 6), (2, 2), (2, 2), (0, 0)),
    ((2, 2, 9, 8), (3, 2), (2, 1), (1, 1)),
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0)),
    ((0, 2, 4, 4), (2, 2), (2, 2), (0, 0)),
    ((64, 8, 26, 26), (2, 2), (2, 2), (0, 0)),
    ((8, 8, 15, 15), (3, 3), (2, 2), (1, 1)),
]
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])
LAYOUTS = pytest.mark.parametrize("layout", ["contiguous", "strided"])


def kernel(name: str):
    backend = get_backend("cpu")
    assert backend.is_kernel(name), f"no kernel registered for {name}"
    return backend.resolve(name)


def sample(shape: tuple[int, ...], dtype: Any, layout: str, seed: int = 0) -> np.ndarray:
    """A standard normal array of `shape`, C-contiguous or a strided (every other row) view."""
    rng = np.random.default_rng(seed)
    if layout == "contiguous":
        return rng.standard_normal(shape).astype(dtype)
    big = rng.standard_normal((*shape[:-1], 2 * shape[-1])).astype(dtype)
    return big[..., ::2]


def tolerance(dtype: Any) -> dict[str, float]:
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@DTYPES
@LAYOUTS
@pytest.mark.parametrize("params", CONV_PARAMS)
def test_im2col_col2im_kernels_match_references(params, dtype, layout):
    shape, k, s, p, d = params
    x = sample(shape, dtype, layout)
    with tl.use_kernels():
        cols = kernel("im2col")(x, k, s, p, d)
        want = REFERENCES["im2col"](x, k, s, p, d)
        assert cols.dtype == dtype and cols.flags.c_contiguous
        np.testing.assert_array_equal(cols, want)
        g = sample(cols.shape, dtype, layout, seed=1)
        gx = kernel("col2im")(g, shape, k, s, p, d)
        assert gx.shape == shape and gx.dtype == dtype
        np.testing.assert_allclose(gx, REFERENCES["col2im"](g, shape, k, s, p, d),
                                   **tolerance(dtype))


@DTYPES
@LAYOUTS
@pytest.mark.parametrize("params", POOL_PARAMS)
def test_pool_kernels_match_references(params, dtype, layout):
    shape, k, s, p = params
    x = sample(shape, dtype, layout)
    with tl.use_kernels():
        y, idx = kernel("maxpool2d_forward")(x, k, s, p)
        y_ref, idx_ref = REFERENCES["maxpool2d_forward"](x, k, s, p)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)
        assert y.dtype == dtype and idx.dtype == np.int64
        g = sample(y.shape, dtype, layout, seed=2)
        np.testing.assert_allclose(kernel("maxpool2d_backward")(g, idx, shape),
                                   REFERENCES["maxpool2d_backward"](g, idx, shape),
                                   **tolerance(dtype))
        avg = kernel("avgpool2d_forward")(x, k, s, p)
        assert avg.dtype == dtype
        np.testing.assert_allclose(avg, REFERENCES["avgpool2d_forward"](x, k, s, p),
                                   **tolerance(dtype))
        np.testing.assert_allclose(kernel("avgpool2d_backward")(g, shape, k, s, p),
                                   REFERENCES["avgpool2d_backward"](g, shape, k, s, p),
                                   **tolerance(dtype))


@DTYPES
@LAYOUTS
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (64, 16, 13, 13), (1, 1, 1, 1), (0, 3, 2, 2)])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_conv_epilogue_kernels_match_references(shape, activation, dtype, layout):
    n, o, oh, ow = shape
    y = sample((o, n * oh * ow), dtype, layout)
    b = sample((o,), dtype, "contiguous", seed=1)
    with tl.use_kernels():
        for bias in (b, None):
            out = kernel("conv2d_bias_act_forward")(y, bias, activation, shape)
            want = REFERENCES["conv2d_bias_act_forward"](y, bias, activation, shape)
            assert out.shape == shape and out.dtype == dtype and out.flags.c_contiguous
            np.testing.assert_allclose(out, want, **tolerance(dtype))
        g = sample(shape, dtype, layout, seed=2)
        saved = out if activation else None
        g2, gb = kernel("conv2d_bias_act_backward")(g, saved, activation)
        g2_ref, gb_ref = REFERENCES["conv2d_bias_act_backward"](g, saved, activation)
    assert g2.shape == (o, n * oh * ow) and g2.dtype == dtype and gb.dtype == dtype
    np.testing.assert_allclose(g2, g2_ref, **tolerance(dtype))
    # float32 sums of up to 10^4 terms, in another order: relative to the terms' scale
    scale = np.sqrt(max(n * oh * ow, 1))
    np.testing.assert_allclose(gb, gb_ref, rtol=1e-5, atol=1e-5 * scale)


@DTYPES
@LAYOUTS
@pytest.mark.parametrize("shape, rows", [((2, 3, 4, 5), 9), ((64, 32, 26, 26), 9),
                                         ((3, 5, 3, 3), 27), ((1, 1, 1, 1), 1),
                                         ((2, 3, 4, 5), 33)])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_first_layer_weight_grad_kernel_matches_reference(shape, rows, activation, dtype, layout):
    """gw, gb straight from g (no regrouped g2) against the reference's g2 @ cols^T; with 33
    rows the kernel regroups and multiplies as the reference does; tanh goes to the reference
    (the kernel declines), which must still answer."""
    n, o, oh, ow = shape
    g = sample(shape, dtype, layout, seed=2)
    out = np.maximum(sample(shape, dtype, "contiguous", seed=3), 0)
    cols = sample((rows, n * oh * ow), dtype, layout, seed=4)
    saved = out if activation else None
    with tl.use_kernels():
        backend = get_backend("cpu")
        assert backend.is_kernel("conv2d_weight_grad")
        gw, gb = backend.resolve("conv2d_weight_grad")(g, saved, activation, cols)
    gw_ref, gb_ref = REFERENCES["conv2d_weight_grad"](g, saved, activation, cols)
    assert gw.shape == (o, rows) and gw.dtype == dtype and gb.shape == (o,) and gb.dtype == dtype
    scale = np.sqrt(max(n * oh * ow, 1))  # sums of N*L terms, in another order
    atol = (1e-5 if dtype == np.float32 else 1e-12) * scale
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(gb, gb_ref, rtol=1e-5, atol=atol)


def test_maxpool_kernel_nan_and_minus_inf_windows_match_reference():
    x = np.full((1, 2, 4, 4), -np.inf, dtype=np.float32)
    x[0, 1, 1, 1], x[0, 1, 2, 2], x[0, 1, 0, 3] = np.nan, np.nan, 5.0
    for p in [(0, 0), (1, 1)]:
        with tl.use_kernels():
            y, idx = kernel("maxpool2d_forward")(x, (2, 2), (2, 2), p)
        y_ref, idx_ref = REFERENCES["maxpool2d_forward"](x, (2, 2), (2, 2), p)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref)


@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
       ties=st.booleans(), nans=st.booleans())
def test_maxpool_2x2_stride_2_path_matches_reference(n, c, h, w, dtype, seed, ties, nans):
    """The kernel's own path for 2x2 windows at stride 2 without padding: odd sizes (a last
    row/column no window covers), ties (the first maximum wins), NaN (the first NaN wins)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (n, c, h, w)) if ties else rng.standard_normal((n, c, h, w))
    x = x.astype(dtype)
    if nans:
        x[rng.random(x.shape) < 0.2] = np.nan
    with tl.use_kernels():
        y, idx = kernel("maxpool2d_forward")(x, (2, 2), (2, 2), (0, 0))
    y_ref, idx_ref = REFERENCES["maxpool2d_forward"](x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


def test_maxpool_2x2_stride_2_path_parallel_branch():
    x = np.random.default_rng(0).standard_normal((16, 32, 27, 26)).astype(np.float32)
    with tl.use_kernels():
        y, idx = kernel("maxpool2d_forward")(x, (2, 2), (2, 2), (0, 0))
    y_ref, idx_ref = REFERENCES["maxpool2d_forward"](x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


@given(case=conv_cases())
def test_im2col_kernel_matches_reference_on_drawn_problems(case):
    x, w = case["x"], case["w"]
    k, s, p, d = w.shape[2:], case["stride"], case["padding"], case["dilation"]
    with tl.use_kernels():
        cols = kernel("im2col")(x, k, s, p, d)
        np.testing.assert_array_equal(cols, REFERENCES["im2col"](x, k, s, p, d))
        np.testing.assert_allclose(kernel("col2im")(cols, x.shape, k, s, p, d),
                                   REFERENCES["col2im"](cols, x.shape, k, s, p, d), rtol=1e-12,
                                   atol=1e-12)


def test_kernels_hand_other_dtypes_to_the_reference():
    x = np.arange(2 * 1 * 4 * 4).reshape(2, 1, 4, 4)  # integers
    with tl.use_kernels():
        y, idx = kernel("maxpool2d_forward")(x, (2, 2), (2, 2), (0, 0))
        cols = kernel("im2col")(x, (2, 2), (1, 1), (0, 0), (1, 1))
    y_ref, idx_ref = REFERENCES["maxpool2d_forward"](x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(cols, REFERENCES["im2col"](x, (2, 2), (1, 1), (0, 0), (1, 1)))


# --- against torch.nn ----------------------------------------------------------------------------
def to_torch(a: np.ndarray, grad: bool = True):
    torch = pytest.importorskip("torch")
    return torch.tensor(a, requires_grad=grad)


def check_layer(ours: nn.Module, theirs: Any, x: np.ndarray, pairs: list[tuple[str, str]],
                device: DeviceCase, atol: float = 1e-10) -> None:
    """Same input, same weights: outputs and the gradients of a random weighting must agree;
    ours runs on `device` (moved there after the weights were copied to theirs)."""
    ours.to(device.device)
    xt = device.tensor(x, requires_grad=True)
    y = ours(xt)
    seed = np.random.default_rng(9).standard_normal(y.shape)
    y.backward(device.tensor(seed))
    x_torch = to_torch(x)
    y_torch = theirs(x_torch)
    y_torch.backward(to_torch(seed, grad=False))
    np.testing.assert_allclose(y.numpy(), y_torch.detach().numpy(), atol=atol, rtol=1e-9)
    np.testing.assert_allclose(xt.grad.numpy(), x_torch.grad.numpy(), atol=atol, rtol=1e-9)
    for mine, their in pairs:
        np.testing.assert_allclose(getattr(ours, mine).grad.numpy(),
                                   getattr(theirs, their).grad.numpy(), atol=atol, rtol=1e-9)


@pytest.mark.parametrize("config", [
    {"in_channels": 3, "out_channels": 4, "kernel_size": 3},
    {"in_channels": 4, "out_channels": 6, "kernel_size": (3, 2), "stride": (2, 1),
     "padding": (1, 2), "dilation": (2, 1), "groups": 2},
    {"in_channels": 2, "out_channels": 2, "kernel_size": 1, "bias": False},
])
def test_conv2d_matches_torch(config, device):
    torch = pytest.importorskip("torch")
    ours = nn.Conv2d(**config, dtype=np.float64)
    theirs = torch.nn.Conv2d(**config).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.numpy()))
        if ours.bias is not None:
            theirs.bias.copy_(torch.from_numpy(ours.bias.numpy()))
    x = np.random.default_rng(0).standard_normal((2, config["in_channels"], 9, 8))
    pairs = [("weight", "weight")] + ([("bias", "bias")] if ours.bias is not None else [])
    check_layer(ours, theirs, x, pairs, device)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_conv2d_with_activation_matches_torch(activation, device):
    torch = pytest.importorskip("torch")
    ours = nn.Conv2d(3, 5, 3, padding=1, activation=activation, dtype=np.float64)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(ours.weight.numpy()))
        conv.bias.copy_(torch.from_numpy(ours.bias.numpy()))
    theirs = torch.nn.Sequential(conv, {"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(),
                                        "sigmoid": torch.nn.Sigmoid()}[activation])
    theirs.weight, theirs.bias = conv.weight, conv.bias  # names check_layer compares
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 7))
    check_layer(ours, theirs, x, [("weight", "weight"), ("bias", "bias")], device)


@pytest.mark.parametrize("args", [(2,), (3, 2, 1), ((3, 2), (1, 2), (1, 0))])
def test_pools_match_torch(args, device):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 7))
    check_layer(nn.MaxPool2d(*args), torch.nn.MaxPool2d(*args), x, [], device)
    check_layer(nn.AvgPool2d(*args), torch.nn.AvgPool2d(*args), x, [], device)


@pytest.mark.parametrize("kind,shape", [("2d", (4, 3, 5, 2)), ("1d", (6, 3)), ("1d", (4, 3, 5))])
def test_batch_norm_matches_torch(kind, shape, device):
    torch = pytest.importorskip("torch")
    ours = (nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d)(3, dtype=np.float64)
    theirs = (torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d)(3).double()
    rng = np.random.default_rng(2)
    with torch.no_grad():
        for name in ("weight", "bias"):
            value = rng.standard_normal(3)
            getattr(ours, name).data[...] = value
            getattr(theirs, name).copy_(torch.from_numpy(value))
    pairs = [("weight", "weight"), ("bias", "bias")]
    for _ in range(2):  # training: batch statistics; running stats move twice
        x = rng.standard_normal(shape) * 3 + 1
        ours.zero_grad()
        theirs.zero_grad()
        check_layer(ours, theirs, x, pairs, device)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(), atol=1e-12)
    ours.eval()
    theirs.eval()
    ours.zero_grad()
    theirs.zero_grad()
    check_layer(ours, theirs, rng.standard_normal(shape), pairs, device)


# --- end to end --------------------------------------------------------------------------------
def test_tiny_cnn_overfits_one_batch(cpu_path):
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    x = tl.Tensor(rng.standard_normal((16, 1, 8, 8)).astype(np.float32))
    labels = rng.integers(0, 3, size=16)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),  # (16, 8, 8, 8)
        nn.MaxPool2d(2),  # (16, 8, 4, 4)
        nn.Conv2d(8, 8, 3), nn.ReLU(), nn.AvgPool2d(2),  # (16, 8, 1, 1)
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(8, 3),
    )
    opt = optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(150):
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    accuracy = (model(x).numpy().argmax(axis=1) == labels).mean()
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    assert accuracy == 1.0
