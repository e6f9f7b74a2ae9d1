"""conv1d, conv_transpose2d, string padding, pooling options, adaptive pooling, interpolate and
group / instance norm: one OpSpec row each, checked against PyTorch 2.13 (values and gradients
in float64), gradchecked, and run on the stand-in device against the CPU reference path.

The NumPy reference of each row is torch itself (`_torch_reference`): these ops are defined by
what torch computes, window bins and rounding included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinygrad_lab import Tensor, nn
from tinygrad_lab.nn import functional as F
from tinygrad_lab.ops.pool import pool_output_size
from tinygrad_lab.testing.opspec import (
    Case,
    OpSpec,
    check_dtypes_and_grad_shapes,
    check_forward_and_gradcheck,
    check_matches_cpu_reference,
    check_matches_torch,
)

# torch's own note that it pads a copy for an even 'same' kernel: nothing this file checks
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def _torch_reference(torch_fn: Callable[..., Any]) -> Callable[..., np.ndarray]:
    def run(*arrays: np.ndarray, **params: Any) -> np.ndarray:
        with torch.no_grad():
            return torch_fn(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays],
                            **params).numpy()
    return run


def _spec(name: str, ours: Callable[..., Any], theirs: Callable[..., Any], n_inputs: int,
          cases: Callable[[], st.SearchStrategy[Case]], **kw: Any) -> OpSpec:
    return OpSpec(name, ours, _torch_reference(theirs), n_inputs=n_inputs, cases=cases,
                  torch_fn=theirs, **kw)


# --- cases: (input shapes, params) ---------------------------------------------------------------
@st.composite
def _conv1d_case(draw: st.DrawFn) -> Case:
    groups = draw(st.sampled_from([1, 2]))
    n, cg, og = draw(st.integers(0, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k, d = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding = draw(st.sampled_from([0, 1, "same", "valid"]))
    stride = 1 if padding == "same" else draw(st.integers(1, 2))
    span = d * (k - 1) + 1
    length = draw(st.integers(max(span - 2 * (padding if isinstance(padding, int) else 0), 1),
                              span + 3))
    o = og * groups
    shapes = ((n, cg * groups, length), (o, cg, k), (o,))
    return shapes, {"stride": stride, "padding": padding, "dilation": d, "groups": groups}


@st.composite
def _conv2d_string_case(draw: st.DrawFn) -> Case:
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw, dh = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["same", "valid"]))
    h = draw(st.integers(dh * (kh - 1) + 1, dh * (kh - 1) + 3))
    w = draw(st.integers(kw, kw + 2))
    return ((n, c, h, w), (o, c, kh, kw), (o,)), {"padding": padding, "dilation": (dh, 1)}


@st.composite
def _conv_transpose_case(draw: st.DrawFn) -> Case:
    groups = draw(st.sampled_from([1, 2]))
    n, cg, og = draw(st.integers(0, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    op = tuple(draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
    # padding keeps the output at least 1: OH = (H-1)S - 2P + D(K-1) + OP + 1
    p = tuple(draw(st.integers(0, ((size - 1) * si + di * (k - 1) + q) // 2))
              for size, si, di, k, q in zip((h, w), s, d, (kh, kw), op))
    shapes = ((n, cg * groups, h, w), (cg * groups, og, kh, kw), (og * groups,))
    return shapes, {"stride": s, "padding": p, "output_padding": op, "groups": groups,
                    "dilation": d}


@st.composite
def _pool_case(draw: st.DrawFn, avg: bool) -> Case:
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (1, 1) if avg else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ceil_mode = draw(st.booleans())
    hw = []
    for ki, si, pi, di in zip(k, s, p, d):
        low = max(di * (ki - 1) + 1 - 2 * pi, 1)
        size = draw(st.integers(low, low + 3))
        hw.append(size)
        out = pool_output_size(size, ki, si, pi, di, ceil_mode)
        assert out >= 1
        # a dilated window wholly inside the padding gives torch -inf and a crashing backward
        assume(all(any(0 <= o * si - pi + i * di < size for i in range(ki)) for o in range(out)))
    params: dict[str, Any] = {"kernel_size": k, "stride": s, "padding": p,
                              "ceil_mode": ceil_mode}
    if avg:
        params["count_include_pad"] = draw(st.booleans())
        params["divisor_override"] = draw(st.sampled_from([None, None, 3]))
    else:
        params["dilation"] = d
    return ((draw(st.integers(0, 2)), draw(st.integers(1, 2)), *hw),), params


@st.composite
def _adaptive_case(draw: st.DrawFn) -> Case:
    lead = draw(st.sampled_from([(), (1,), (2,), (0,)]))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    out = draw(st.sampled_from([draw(st.integers(1, 4)),
                                (draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                                (None, draw(st.integers(1, 3)))]))
    return ((*lead, 2, h, w),), {"output_size": out}


def _nearest_agrees(size: int, scale: float) -> bool:
    """Whether torch's nearest picks the same sources from 1/scale (its forward) and from
    size/out (its backward); where not, torch's gradient is not its forward's."""
    out = int(size * scale)
    dst = np.arange(out, dtype=np.float32)
    return bool((np.floor(dst * np.float32(1 / scale)) ==
                 np.floor(dst * (np.float32(size) / np.float32(out)))).all())


@st.composite
def _interpolate_case(draw: st.DrawFn) -> Case:
    mode = draw(st.sampled_from(["nearest", "bilinear", "linear"]))
    spatial = {"linear": 1, "bilinear": 2}.get(mode) or draw(st.sampled_from([1, 2]))
    sizes = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    params: dict[str, Any] = {"mode": mode}
    if mode != "nearest":
        params["align_corners"] = draw(st.booleans())
    if draw(st.booleans()):
        params["size"] = tuple(draw(st.integers(1, 6)) for _ in range(spatial))
    else:
        params["scale_factor"] = draw(st.sampled_from([0.5, 1.5, 2.0, 3.0, 1.7, 2.25]))
        if any(int(n * params["scale_factor"]) < 1 for n in sizes):
            params["scale_factor"] = 2.0
        if mode == "nearest":  # see test_nearest_gradient_is_the_adjoint_of_the_forward
            assume(all(_nearest_agrees(n, params["scale_factor"]) for n in sizes))
    return ((draw(st.integers(0, 2)), 2, *sizes),), params


@st.composite
def _group_norm_case(draw: st.DrawFn) -> Case:
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 2))
    rest = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    if c // groups * int(np.prod(rest)) < 2:
        rest = (*rest, 2)
    return ((draw(st.integers(0, 2)), c, *rest), (c,), (c,)), {"num_groups": groups}


@st.composite
def _instance_norm_case(draw: st.DrawFn) -> Case:
    c = draw(st.integers(1, 3))
    rest = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    # torch 2.13's instance_norm fails on an empty batch (select(): index 0 out of range)
    return ((draw(st.integers(1, 2)), c, *rest), (c,), (c,)), {}


# --- the table ---------------------------------------------------------------------------------
def _t_conv_transpose(x: Any, w: Any, b: Any, **p: Any) -> Any:
    return TF.conv_transpose2d(x, w, b, p["stride"], p["padding"], p["output_padding"],
                               p["groups"], p["dilation"])


def _interp_torch(x: Any, **p: Any) -> Any:
    return TF.interpolate(x, **p)


_NORM_TOLERANCE = (1e-10, 1e-12)  # gradients of cancelling sums: last bits of near-zero entries
SPECS = [
    _spec("conv1d", F.conv1d, TF.conv1d, 3, _conv1d_case),
    _spec("conv2d-same-valid", F.conv2d, TF.conv2d, 3, _conv2d_string_case),
    _spec("conv_transpose2d", F.conv_transpose2d, _t_conv_transpose, 3, _conv_transpose_case),
    _spec("max_pool2d-dilation-ceil", F.max_pool2d, TF.max_pool2d, 1,
          lambda: _pool_case(avg=False), separated=True),
    _spec("avg_pool2d-options", F.avg_pool2d, TF.avg_pool2d, 1, lambda: _pool_case(avg=True)),
    _spec("adaptive_avg_pool2d", F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, 1,
          _adaptive_case),
    _spec("adaptive_max_pool2d", F.adaptive_max_pool2d, TF.adaptive_max_pool2d, 1,
          _adaptive_case, separated=True),
    _spec("interpolate", F.interpolate, _interp_torch, 1, _interpolate_case),
    _spec("group_norm", lambda x, w, b, num_groups: F.group_norm(x, num_groups, w, b),
          lambda x, w, b, num_groups: TF.group_norm(x, num_groups, w, b), 3, _group_norm_case,
          separated=True, torch_tolerance=_NORM_TOLERANCE),
    _spec("instance_norm", lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
          lambda x, w, b: TF.instance_norm(x, weight=w, bias=b), 3, _instance_norm_case,
          separated=True, torch_tolerance=_NORM_TOLERANCE),
]
IDS = [s.name for s in SPECS]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@settings(max_examples=30)
@given(data=st.data())
def test_forward_and_gradcheck(spec: OpSpec, data: st.DataObject) -> None:
    check_forward_and_gradcheck(spec, data)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@settings(max_examples=30)
@given(data=st.data())
def test_matches_torch(spec: OpSpec, data: st.DataObject) -> None:
    check_matches_torch(spec, data)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@settings(max_examples=10)
@given(data=st.data())
def test_float32_stays_float32_and_gradients_keep_shapes(spec: OpSpec,
                                                         data: st.DataObject) -> None:
    check_dtypes_and_grad_shapes(spec, data)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("device", ["standin", "cuda"], indirect=True)
@settings(max_examples=5)
@given(data=st.data())
def test_on_other_devices_matches_the_cpu_reference(spec: OpSpec, data: st.DataObject,
                                                         device: Any) -> None:
    check_matches_cpu_reference(spec, data, device.device)


def test_nearest_gradient_is_the_adjoint_of_the_forward() -> None:
    """scale_factor=2.25 on 2 elements: torch's forward reads sources [0, 0, 0, 1] but its
    backward sends the gradient to [0, 0, 1, 1]. Ours matches torch's forward, and the gradient
    is that forward's."""
    x = Tensor(np.array([[[0.0, 1.0]]]), requires_grad=True)
    y = F.interpolate(x, scale_factor=2.25)
    theirs = TF.interpolate(torch.tensor([[[0.0, 1.0]]]), scale_factor=2.25)
    np.testing.assert_array_equal(y.numpy(), theirs.numpy())
    y.backward(np.array([[[1.0, 10.0, 100.0, 1000.0]]]))
    np.testing.assert_array_equal(x.grad.numpy(), [[[111.0, 1000.0]]])


# --- layers --------------------------------------------------------------------------------------
def _both(ours: Any, theirs: torch.nn.Module, x: np.ndarray) -> None:
    """The layer and torch's give the same output and input gradient (float64)."""
    xt = torch.tensor(x, requires_grad=True)
    want = theirs(xt)
    seed = np.random.default_rng(1).standard_normal(tuple(want.shape))
    want.backward(torch.tensor(seed))
    xo = Tensor(x, requires_grad=True)
    got = ours(xo)
    got.backward(seed)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-13)


X = np.random.default_rng(0).standard_normal((2, 3, 7, 6))


@pytest.mark.parametrize(("ours", "theirs"), [
    (nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
     torch.nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True)),
    (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
     torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
    (nn.AvgPool2d(2, divisor_override=3), torch.nn.AvgPool2d(2, divisor_override=3)),
    (nn.AdaptiveAvgPool2d((3, None)), torch.nn.AdaptiveAvgPool2d((3, None))),
    (nn.AdaptiveMaxPool2d(1), torch.nn.AdaptiveMaxPool2d(1)),
    (nn.Upsample(size=(9, 4), mode="bilinear", align_corners=True),
     torch.nn.Upsample(size=(9, 4), mode="bilinear", align_corners=True)),
    (nn.Upsample(scale_factor=2), torch.nn.Upsample(scale_factor=2)),
    (nn.InstanceNorm2d(3), torch.nn.InstanceNorm2d(3)),
], ids=["maxpool", "avgpool", "avgpool-divisor", "adaptive-avg", "adaptive-max", "bilinear",
        "nearest", "instancenorm"])
def test_layer_matches_torch(ours: Any, theirs: torch.nn.Module) -> None:
    _both(ours, theirs, X)
    assert type(ours).__name__ in repr(ours)


def test_instance_norm_running_stats_move_as_torch_and_unbatched_input() -> None:
    ours = nn.InstanceNorm2d(3, momentum=0.3, track_running_stats=True, dtype=np.float64)
    theirs = torch.nn.InstanceNorm2d(3, momentum=0.3, track_running_stats=True).double()
    _both(ours, theirs, X)
    np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy())
    np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy())
    ours.eval()
    theirs.eval()
    _both(ours, theirs, X)  # normalised by the running stats now
    _both(ours, theirs, X[0])  # (C, H, W)


def test_group_norm_layer_and_conv_layers_initialise_as_torch() -> None:
    norm = nn.GroupNorm(2, 4, affine=False)
    assert norm.weight is None and "affine=False" in repr(norm)
    conv = nn.ConvTranspose2d(4, 6, (2, 3), groups=2)
    assert conv.weight.shape == (4, 3, 2, 3) and conv.bias.shape == (6,)
    bound = 1 / np.sqrt(3 * 2 * 3)  # torch's fan-in: weight.shape[1] * KH * KW
    assert np.abs(conv.weight.numpy()).max() <= bound
    assert nn.Conv1d(4, 6, 3, groups=2).weight.shape == (6, 2, 3)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: F.conv_transpose2d(Tensor(X), Tensor(np.ones((3, 2, 3, 3))), stride=2,
                                output_padding=2), "output_padding"),
    (lambda: F.conv_transpose2d(Tensor(X), Tensor(np.ones((2, 2, 3, 3)))), "channels"),
    (lambda: F.conv2d(Tensor(X), Tensor(np.ones((2, 3, 3, 3))), stride=2, padding="same"),
     "strided"),
    (lambda: F.conv2d(Tensor(X), Tensor(np.ones((2, 3, 3, 3))), padding="full"), "'same'"),
    (lambda: nn.Conv1d(2, 2, 3, padding="full"), "'same'"),
    (lambda: F.conv1d(Tensor(X), Tensor(np.ones((2, 3, 3)))), "(N, C, L) or (C, L)"),
    (lambda: F.max_pool2d(Tensor(X), 2, padding=2, dilation=2), "padding"),
    (lambda: F.avg_pool2d(Tensor(X), 2, divisor_override=0), "divisor_override"),
    (lambda: F.interpolate(Tensor(X), mode="bicubic", size=3), "mode"),
    (lambda: F.interpolate(Tensor(X), size=3, scale_factor=2), "exactly one"),
    (lambda: F.interpolate(Tensor(X), scale_factor=2, align_corners=True), "align_corners"),
    (lambda: F.interpolate(Tensor(X), scale_factor=2, mode="linear"), "3-D"),
    (lambda: F.adaptive_avg_pool2d(Tensor(X), (2, 0)), "output_size"),
    (lambda: F.group_norm(Tensor(X), 2), "num_groups"),
    (lambda: F.instance_norm(Tensor(X[:, :, :1, :1])), "more than 1"),
    (lambda: nn.InstanceNorm2d(4)(Tensor(X)), "InstanceNorm2d"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments_are_named(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_adaptive_max_pool_ties_follow_torch_when_bins_are_even() -> None:
    """Global pooling of a constant plane: torch's gradient goes to the first element only."""
    x = Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.adaptive_max_pool2d(x, 1).sum().backward()
    xt = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    TF.adaptive_max_pool2d(xt, 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


def test_interpolate_needs_floats() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        F.interpolate(Tensor(np.ones((1, 1, 2, 2), dtype=np.int64)), scale_factor=2)


def test_conv1d_takes_an_unbatched_input() -> None:
    x, w = np.random.default_rng(2).standard_normal((3, 5)), np.ones((2, 3, 2))
    got = F.conv1d(Tensor(x), Tensor(w), padding="same")
    want = TF.conv1d(torch.from_numpy(x), torch.from_numpy(w), padding="same")
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12)
