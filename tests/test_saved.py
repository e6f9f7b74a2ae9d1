"""What nodes keep for backward: only what the gradients of the inputs that need one use, and
saved bytes that are true (the node holds no array it does not report); gradients stay right."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import Tensor
from tinygrad_lab.function import Function
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import gradcheck


def _arrays(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays(v)]
    return []


def held_bytes(node: Function) -> int:
    """Bytes of every array the node holds but its inputs' tensors and the op's own parameters
    passed in by the caller (ids, masks): what saved_bytes() has to report."""
    params = {"ids", "labels", "mask", "cos", "sin", "index"}
    return sum(a.nbytes for key, v in vars(node).items() if key not in params | {"parents"}
               for a in _arrays(v))


def saved_arrays(t: Tensor) -> list[np.ndarray]:
    return _arrays(t._ctx.saved)


def _randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _keeps(t: Tensor, x: Tensor) -> bool:
    """Whether the node that made t saved x's array (or a view of it)."""
    return any(np.shares_memory(a, x.data) for a in saved_arrays(t))


# --- elementwise and linear algebra -------------------------------------------------------------
@pytest.mark.parametrize("op", ["mul", "rmul", "div"])
def test_times_or_over_a_constant_keeps_only_the_constant(op: str) -> None:
    x = Tensor(_randn(50, 100), requires_grad=True)  # 40 KB
    c = Tensor(_randn(50, 100, seed=1))
    y = {"mul": lambda: x * c, "rmul": lambda: c * x, "div": lambda: x / c}[op]()
    assert not _keeps(y, x)
    assert y._ctx.saved_bytes() == held_bytes(y._ctx) == c.nbytes  # was 80,000 B: x and c


def test_mul_keeps_both_when_both_need_gradients() -> None:
    a, b = (Tensor(_randn(4, 5, seed=i), requires_grad=True) for i in range(2))
    y = a * b
    assert _keeps(y, a) and _keeps(y, b)
    assert y._ctx.saved_bytes() == a.nbytes + b.nbytes


def test_backward_returns_none_for_an_input_without_gradient() -> None:
    x = Tensor(np.abs(_randn(3, 4)) + 0.5, requires_grad=True)
    c = Tensor(_randn(3, 4, seed=1))
    for y in (x * c, c * x, x / c, c / x, x @ c.T, c.T @ x, x**c, c.abs() ** x):
        grads = y._ctx.backward(np.ones(y.shape))
        const = 0 if y._ctx.parents[0] is not x else 1
        assert grads[const] is None and grads[1 - const] is not None


def test_dropout_keeps_only_its_mask() -> None:
    tl.manual_seed(0)
    x = Tensor(_randn(100, 100).astype(np.float32), requires_grad=True)  # 40 KB
    y = F.dropout(x, 0.5, training=True)
    assert not _keeps(y, x)
    assert y._ctx.saved_bytes() == held_bytes(y._ctx) == x.nbytes  # the mask; was 2 x 40 KB
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy() / np.where(x.numpy() == 0, 1,
                                                                        x.numpy()))


def test_matmul_and_linear_keep_what_the_weight_gradient_needs() -> None:
    data = Tensor(_randn(64, 32))  # a batch: no gradient
    w = Tensor(_randn(32, 16, seed=1), requires_grad=True)
    b = Tensor(_randn(16, seed=2), requires_grad=True)
    y = data @ w
    assert _keeps(y, data) and not _keeps(y, w)  # dw = data^T g; no dx, so no w
    z = F.linear(data, w, b)
    assert _keeps(z, data) and not _keeps(z, w)
    assert z._ctx.saved_bytes() == data.nbytes
    frozen = Tensor(_randn(32, 16, seed=1))
    x = Tensor(_randn(64, 32), requires_grad=True)
    z = F.linear(x, frozen, activation="relu")
    assert not _keeps(z, x) and _keeps(z, frozen)  # dx = g w^T: w and the relu output


def test_conv2d_with_frozen_weights_keeps_no_columns() -> None:
    x = Tensor(_randn(2, 3, 8, 8), requires_grad=True)
    w = Tensor(_randn(4, 3, 3, 3, seed=1))
    trained = Tensor(w.data, requires_grad=True)
    frozen_node = F.conv2d(x, w, padding=1)._ctx
    trained_node = F.conv2d(x, trained, padding=1)._ctx
    cols = 3 * 3 * 3 * 2 * 8 * 8 * 8  # (C*KH*KW, N*OH*OW) float64
    assert frozen_node.saved_bytes() == w.nbytes  # only the weights, for dx
    assert trained_node.saved_bytes() == w.nbytes + cols


def test_pow_keeps_what_each_gradient_needs() -> None:
    x = Tensor(np.abs(_randn(3, 4)) + 0.5, requires_grad=True)
    c = Tensor(_randn(3, 4, seed=1))
    assert x._ctx is None
    assert (x**c)._ctx.saved_bytes() == 2 * x.nbytes  # a, b for dz/da
    assert (c.abs() ** x)._ctx.saved_bytes() == 2 * x.nbytes  # a, z for dz/db


@pytest.mark.parametrize("case", ["x*c", "c*x", "x/c", "c/x", "x**c", "c**x", "x@c", "c@x",
                                  "linear", "linear_frozen", "conv_frozen", "where", "maximum"])
def test_gradients_stay_right_with_constant_inputs(case: str) -> None:
    c = _randn(4, 4, seed=1)
    pos = np.abs(c) + 0.5
    fns = {
        "x*c": lambda x: x * Tensor(c),
        "c*x": lambda x: Tensor(c) * x,
        "x/c": lambda x: x / Tensor(pos),
        "c/x": lambda x: Tensor(c) / (x * x + 1),
        "x**c": lambda x: (x * x + 1) ** Tensor(c),
        "c**x": lambda x: Tensor(pos) ** x,
        "x@c": lambda x: x @ Tensor(c),
        "c@x": lambda x: Tensor(c) @ x,
        "linear": lambda x: F.linear(Tensor(c), x, activation="tanh"),
        "linear_frozen": lambda x: F.linear(x, Tensor(c), Tensor(c[0]), activation="gelu"),
        "conv_frozen": lambda x: F.conv2d(x.reshape(1, 1, 4, 4), Tensor(c[None, None, :2, :2]),
                                          activation="sigmoid"),
        "where": lambda x: tl.where(c > 0, x, Tensor(c)),
        "maximum": lambda x: x.maximum(Tensor(c)),
    }
    x = _randn(4, 4, seed=3)
    assert gradcheck(fns[case], x)


# --- split: one node for every part --------------------------------------------------------------
@pytest.mark.parametrize("how", ["unbind", "chunk"])
def test_split_node_reports_true_saved_bytes(how: str) -> None:
    x = Tensor(_randn(50, 100), requires_grad=True)  # 40 KB
    parts = x.unbind(0) if how == "unbind" else x.chunk(4, axis=1)
    node = parts[0]._ctx
    assert all(p._ctx is node for p in parts) and node.outputs == len(parts)
    # the node keeps the input's shape and dtype only (the parts are views of x); before, a second
    # node held the whole input outside what it saved and reported 0 B for 40 KB
    assert node.saved_bytes() == held_bytes(node) == 0
    loss = sum((p * (i + 1)).sum() for i, p in enumerate(parts[:3]))
    tape = loss.tape()
    assert tape.count(f"Split[0/{len(parts)}]") == 1
    total = int(tape.splitlines()[-1].split()[-2].replace(",", ""))
    assert total == 3 * 8  # each Mul by a Python number keeps only the number, 0-d float64
    loss.backward()
    want = np.zeros(x.shape)
    for i in range(3):
        if how == "unbind":
            want[i] = i + 1
        else:
            want[:, 25 * i:25 * (i + 1)] = i + 1
    np.testing.assert_array_equal(x.grad.numpy(), want)
    assert node.saved is None and node.parents == ()  # freed after its one backward


def test_split_parts_from_two_splits_of_one_tensor() -> None:
    x = Tensor(_randn(4, 6), requires_grad=True)
    a = x.unbind(0)
    b = x.chunk(3, axis=1)
    assert gradcheck(lambda t: (t.unbind(0)[1] * 2).sum() + t.chunk(3, axis=1)[2].tanh().sum()
                     + (t.unbind(1)[0] * t.unbind(0)[3][0]).sum(), x.data)
    (a[0].sum() + b[1].sum() * 3).backward()
    want = np.zeros((4, 6))
    want[0] += 1
    want[:, 2:4] += 3
    np.testing.assert_array_equal(x.grad.numpy(), want)


def test_split_profiles_one_record_per_phase() -> None:
    x = Tensor(_randn(3, 4), requires_grad=True)
    with tl.profile() as records:
        a, b, c = x.unbind(0)
        (a + c).sum().backward()
    split = [r for r in records if r["op"] == "Split"]
    assert [r["phase"] for r in split] == ["forward", "backward"]
    assert split[0]["out_bytes"] == 3 * 4 * 8
