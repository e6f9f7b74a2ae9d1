"""Optimizers against torch.optim (same hyperparameters, several steps, float64 and float32) and
against values computed by hand for two steps, on the reference path and with kernels on."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import tinygrad_lab as tl
from tinygrad_lab import optim
from tinygrad_lab.nn import Parameter

SHAPES = [(3, 4), (5,)]
STEPS = 3


def _params_and_grads(
    dtype: type = np.float64, steps: int = STEPS, seed: int = 0
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    return params, grads


# (id, the class of tinygrad_lab.optim and torch.optim, keyword arguments both read alike)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("sgd", "SGD", {"lr": 0.1}),
    ("sgd-momentum", "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("sgd-dampening", "SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("sgd-nesterov", "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("sgd-weight-decay", "SGD", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.01}),
    ("adam", "Adam", {"lr": 0.01}),
    ("adam-l2", "Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("adamw", "AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("rmsprop", "RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-8}),
    ("rmsprop-momentum", "RMSprop",
     {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "momentum": 0.8, "weight_decay": 0.05}),
    ("adagrad", "Adagrad", {"lr": 0.1}),
    ("adagrad-weight-decay", "Adagrad", {"lr": 0.1, "eps": 1e-6, "weight_decay": 0.1}),
]
CASE_IDS = [c[0] for c in CASES]


def _make(case: tuple[str, str, dict[str, Any]]) -> Callable[[list[Parameter]], Any]:
    _, name, kwargs = case
    return lambda params: getattr(optim, name)(params, **kwargs)


def _run_ours(make, params0, grads, dtype=np.float64) -> list[list[np.ndarray]]:
    """Our optimizer over the given gradients; the parameters after each step."""
    params = [Parameter(p.copy()) for p in params0]
    opt = make(params)
    after = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = tl.Tensor(g.copy())
        opt.step()
        assert all(p.dtype == dtype for p in params), "a step changed the parameters' dtype"
        after.append([p.numpy().copy() for p in params])
    return after


def _run_torch(case, params0, grads) -> list[list[np.ndarray]]:
    """torch.optim over the same gradients, in the parameters' dtype; the values after each
    step."""
    _, name, kwargs = case
    params = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    opt = getattr(torch.optim, name)(params, **kwargs)
    after = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g.copy())
        opt.step()
        after.append([p.detach().numpy().copy() for p in params])
    return after


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_optimizer_matches_torch_float64(case, cpu_path):
    params0, grads = _params_and_grads(steps=5, seed=1)
    ours = _run_ours(_make(case), params0, grads)
    theirs = _run_torch(case, params0, grads)
    for t, (got_step, want_step) in enumerate(zip(ours, theirs), start=1):
        for got, want in zip(got_step, want_step):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"step {t}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_optimizer_steps_keep_float32_and_match_torch(case, cpu_path):
    params0, grads = _params_and_grads(np.float32)
    ours = _run_ours(_make(case), params0, grads, dtype=np.float32)
    theirs = _run_torch(case, params0, grads)
    for got_step, want_step in zip(ours, theirs):
        for got, want in zip(got_step, want_step):
            assert want.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --- hand-computed values: p = [1, -1], g = [2, -0.5] (sign(g) = [1, -1]) ---------------------
HAND = [  # (id, optimizer, parameters after step 1, after step 2 with the same gradient)
    # Adagrad: s = g^2, then 2 g^2: p -= lr g / sqrt(s) = lr sign(g), then lr sign(g) / sqrt(2)
    ("adagrad", lambda ps: optim.Adagrad(ps, lr=0.1, eps=0.0),
     [0.9, -0.9], [0.9 - 0.1 / math.sqrt(2), -0.9 + 0.1 / math.sqrt(2)]),
    # RMSprop: s = (1 - alpha) g^2, sqrt(s) = 0.1 |g|: p -= lr * 10 sign(g); then
    # s = (0.99 * 0.01 + 0.01) g^2 = 0.0199 g^2
    ("rmsprop", lambda ps: optim.RMSprop(ps, lr=0.01, alpha=0.99, eps=0.0),
     [0.9, -0.9], [0.9 - 0.01 / math.sqrt(0.0199), -0.9 + 0.01 / math.sqrt(0.0199)]),
    # AdamW: p *= 1 - lr wd = 0.95, then the bias-corrected first Adam step lr sign(g); step 2
    # with the same g moves by lr sign(g) again (m_hat = g, v_hat = g^2)
    ("adamw", lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.5, eps=0.0),
     [0.85, -0.85], [0.85 * 0.95 - 0.1, -0.85 * 0.95 + 0.1]),
    # SGD with weight decay: d = g + wd p = [2.1, -0.6]; then [2 + 0.079, -0.5 - 0.094]
    ("sgd-weight-decay", lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.1),
     [0.79, -0.94], [0.79 - 0.1 * 2.079, -0.94 + 0.1 * 0.594]),
    # Nesterov: v = g, d = g + mu v = 1.9 g; then v = 1.9 g, d = g + 0.9 * 1.9 g = 2.71 g
    ("sgd-nesterov", lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
     [1 - 0.38, -1 + 0.095], [1 - 0.38 - 0.542, -1 + 0.095 + 0.1355]),
]


@pytest.mark.parametrize("case", HAND, ids=[c[0] for c in HAND])
def test_optimizer_first_two_steps_by_hand(case, cpu_path):
    _, make, after_one, after_two = case
    p = Parameter(np.array([1.0, -1.0]))
    opt = make([p])
    for want in (after_one, after_two):
        p.grad = tl.Tensor(np.array([2.0, -0.5]))
        opt.step()
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-12)


def test_first_sgd_momentum_step_is_plain_sgd():
    """PyTorch seeds the momentum buffer with the first gradient: step 1 == plain SGD."""
    p = Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.5, momentum=0.9, dampening=0.5)
    p.grad = tl.Tensor(np.array([0.2, 0.4]))
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.9, -2.2])
    p.grad = tl.Tensor(np.array([0.2, 0.4]))
    opt.step()  # v = 0.9 * g + 0.5 * g = 1.4 g
    np.testing.assert_allclose(p.numpy(), [0.9 - 0.5 * 1.4 * 0.2, -2.2 - 0.5 * 1.4 * 0.4])


def test_adam_first_step_moves_each_weight_by_lr():
    """With bias correction, Adam's first step is lr * g / (|g| + eps) = lr * sign(g)."""
    p = Parameter(np.array([1.0, 1.0, 1.0]))
    opt = optim.Adam([p], lr=0.1, eps=1e-12)
    p.grad = tl.Tensor(np.array([3.0, -1e-3, 50.0]))
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.9, 1.1, 0.9], rtol=1e-9)


def test_step_uses_gradients_from_backward():
    w = Parameter(np.array([[1.0, 2.0], [3.0, 4.0]]))
    x = tl.Tensor(np.array([[1.0, -1.0]]))
    opt = optim.SGD([w], lr=0.1)
    loss = (x @ w).sum()  # d/dw = x^T @ ones
    loss.backward()
    opt.step()
    np.testing.assert_allclose(w.numpy(), [[0.9, 1.9], [3.1, 4.1]])
    opt.zero_grad()
    assert w.grad is None


def test_lr_can_be_changed_between_steps():
    p = Parameter(np.array([1.0]))
    opt = optim.SGD([p], lr=0.1)
    opt.lr = 0.5
    p.grad = tl.Tensor(np.array([1.0]))
    opt.step()
    np.testing.assert_allclose(p.numpy(), [0.5])


# --- validation, skipping, clipping ---------------------------------------------------------------
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
def test_optimizer_rejects_empty_params(cls):
    with pytest.raises(ValueError, match="empty"):
        cls([], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        cls(iter([]), lr=0.1)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad])
def test_optimizer_rejects_negative_lr(cls):
    with pytest.raises(ValueError, match="-0.1"):
        cls([Parameter(np.zeros(2))], lr=-0.1)
    with pytest.raises(ValueError, match="nan"):
        cls([Parameter(np.zeros(2))], lr=float("nan"))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_parameter_listed_twice_is_updated_once(case):
    make = _make(case)
    twice, once = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt_twice, opt_once = make([twice, twice]), make([once])
    assert len(opt_twice.params) == 1
    for opt, p in ((opt_twice, twice), (opt_once, once)):
        p.grad = tl.Tensor(np.array([1.0, -2.0, 0.5]))
        opt.step()
    np.testing.assert_array_equal(twice.numpy(), once.numpy())


def test_optimizer_rejects_tensor_without_grad():
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([tl.Tensor(np.zeros(3))], lr=0.1)


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([Parameter(np.zeros(2))], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_params_without_grad_are_skipped(case, cpu_path):
    make = _make(case)
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = make([a, b])
    b.grad = tl.Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(a.numpy(), np.ones(3))
    assert not np.allclose(b.numpy(), np.ones(2))
    # a parameter that gets its first gradient late starts its state (step count) from scratch
    a.grad = tl.Tensor(np.ones(3))
    b.grad = None
    before_b = b.numpy().copy()
    opt.step()
    np.testing.assert_array_equal(b.numpy(), before_b)
    fresh = Parameter(np.ones(3))
    other = make([fresh])
    fresh.grad = tl.Tensor(np.ones(3))
    other.step()
    np.testing.assert_allclose(a.numpy(), fresh.numpy(), rtol=1e-12)


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    a.grad = tl.Tensor(np.array([3.0, 0.0]))
    b.grad = tl.Tensor(np.array([4.0]))
    norm = optim.clip_grad_norm_([a, b], max_norm=1.0)
    assert norm.shape == () and math.isclose(norm.item(), 5.0)
    clipped = np.sqrt((a.grad.numpy() ** 2).sum() + (b.grad.numpy() ** 2).sum())
    assert math.isclose(clipped, 1.0, rel_tol=1e-5)
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), [0.8], rtol=1e-5)
    assert a.grad.dtype == np.float64


def test_clip_grad_norm_leaves_small_gradients_and_skips_missing_ones():
    a, b = Parameter(np.zeros(2, np.float32)), Parameter(np.zeros(3))
    a.grad = tl.Tensor(np.array([0.3, 0.4], np.float32))
    norm = optim.clip_grad_norm_((p for p in [a, b]), max_norm=1.0)
    assert math.isclose(norm.item(), 0.5, rel_tol=1e-6)
    np.testing.assert_array_equal(a.grad.numpy(), np.array([0.3, 0.4], np.float32))
    assert b.grad is None
    assert optim.clip_grad_norm_([b], max_norm=1.0).item() == 0.0
