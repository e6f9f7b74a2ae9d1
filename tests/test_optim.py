"""Optimizers against hand-written NumPy updates (the papers' / PyTorch's formulas), on the
reference path and with kernels on; against torch.optim when torch is importable."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import optim
from tinygrad_lab.nn import Parameter

SHAPES = [(3, 4), (5,)]
STEPS = 3


@contextlib.contextmanager
def engine(path: str) -> Iterator[None]:
    """'reference': pure NumPy bodies; 'kernels': registered kernels where there are any."""
    with tl.reference() if path == "reference" else tl.use_kernels():
        yield


PATHS = pytest.mark.parametrize("path", ["reference", "kernels"])


def _params_and_grads(
    dtype: type = np.float64, steps: int = STEPS, seed: int = 0
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    return params, grads


# --- the formulas, written out once more in NumPy (PyTorch's documented algorithms) ------------
def np_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    def step(p, g, state, t):
        d = g + weight_decay * p
        if momentum:
            if t == 1:
                state["b"] = d.copy()
            else:
                state["b"] = momentum * state["b"] + (1 - dampening) * d
            d = d + momentum * state["b"] if nesterov else state["b"]
        return p - lr * d

    return step


def np_adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    b1, b2 = betas

    def step(p, g, state, t):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
        state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
        m_hat = state["m"] / (1 - b1**t)
        v_hat = state["v"] / (1 - b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)

    return step


def np_rmsprop(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
    def step(p, g, state, t):
        g = g + weight_decay * p
        state["s"] = alpha * state.get("s", 0.0) + (1 - alpha) * g * g
        direction = g / (np.sqrt(state["s"]) + eps)
        if momentum:
            state["buf"] = momentum * state.get("buf", 0.0) + direction
            direction = state["buf"]
        return p - lr * direction

    return step


def np_adagrad(lr, eps=1e-10, weight_decay=0.0):
    def step(p, g, state, t):
        g = g + weight_decay * p
        state["s"] = state.get("s", 0.0) + g * g
        return p - lr * g / (np.sqrt(state["s"]) + eps)

    return step


# (id, our optimizer factory, NumPy reference, torch factory name and kwargs)
CASES: list[tuple[str, Callable, Callable, str, dict]] = [
    ("sgd", lambda ps: optim.SGD(ps, lr=0.1), np_sgd(0.1), "SGD", {"lr": 0.1}),
    (
        "sgd-momentum",
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
        np_sgd(0.1, momentum=0.9),
        "SGD",
        {"lr": 0.1, "momentum": 0.9},
    ),
    (
        "sgd-dampening",
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3),
        np_sgd(0.1, momentum=0.9, dampening=0.3),
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
    ),
    (
        "sgd-nesterov",
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        np_sgd(0.1, momentum=0.9, nesterov=True),
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    ),
    (
        "sgd-weight-decay",
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.5, weight_decay=0.01),
        np_sgd(0.1, momentum=0.5, weight_decay=0.01),
        "SGD",
        {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.01},
    ),
    ("adam", lambda ps: optim.Adam(ps, lr=0.01), np_adam(0.01), "Adam", {"lr": 0.01}),
    (
        "adam-l2",
        lambda ps: optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        np_adam(0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        "Adam",
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    ),
    (
        "adamw",
        lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1),
        np_adam(0.01, weight_decay=0.1, decoupled=True),
        "AdamW",
        {"lr": 0.01, "weight_decay": 0.1},
    ),
    (
        "rmsprop",
        lambda ps: optim.RMSprop(ps, lr=0.01, alpha=0.9),
        np_rmsprop(0.01, alpha=0.9),
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "eps": 1e-8},
    ),
    (
        "rmsprop-momentum",
        lambda ps: optim.RMSprop(ps, lr=0.01, alpha=0.9, momentum=0.8, weight_decay=0.05),
        np_rmsprop(0.01, alpha=0.9, momentum=0.8, weight_decay=0.05),
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "momentum": 0.8, "weight_decay": 0.05},
    ),
    ("adagrad", lambda ps: optim.Adagrad(ps, lr=0.1), np_adagrad(0.1), "Adagrad", {"lr": 0.1}),
    (
        "adagrad-weight-decay",
        lambda ps: optim.Adagrad(ps, lr=0.1, eps=1e-6, weight_decay=0.1),
        np_adagrad(0.1, eps=1e-6, weight_decay=0.1),
        "Adagrad",
        {"lr": 0.1, "eps": 1e-6, "weight_decay": 0.1},
    ),
]
CASE_IDS = [c[0] for c in CASES]


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


def _run_numpy(update, params0, grads) -> list[list[np.ndarray]]:
    params = [p.astype(np.float64) for p in params0]
    states: list[dict] = [{} for _ in params]
    after = []
    for t, step_grads in enumerate(grads, start=1):
        params = [
            update(p, g.astype(np.float64), s, t) for p, g, s in zip(params, step_grads, states)
        ]
        after.append([p.copy() for p in params])
    return after


@PATHS
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_optimizer_steps_match_the_formula_float64(case, path):
    _, make, update, _, _ = case
    params0, grads = _params_and_grads()
    with engine(path):
        ours = _run_ours(make, params0, grads)
    expected = _run_numpy(update, params0, grads)
    for t, (got_step, want_step) in enumerate(zip(ours, expected), start=1):
        for got, want in zip(got_step, want_step):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"step {t}")


@PATHS
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_optimizer_steps_keep_float32(case, path):
    _, make, update, _, _ = case
    params0, grads = _params_and_grads(np.float32)
    with engine(path):
        ours = _run_ours(make, params0, grads, dtype=np.float32)
    expected = _run_numpy(update, params0, grads)
    for got, want in zip(ours[-1], expected[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


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


# --- torch.optim, 5 steps ------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_optimizer_matches_torch_over_five_steps(case):
    torch = pytest.importorskip("torch")
    _, make, _, torch_name, torch_kwargs = case
    params0, grads = _params_and_grads(steps=5, seed=1)
    ours = _run_ours(make, params0, grads)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params0]
    topt = getattr(torch.optim, torch_name)(tparams, **torch_kwargs)
    for t, step_grads in enumerate(grads):
        for tp, g in zip(tparams, step_grads):
            tp.grad = torch.tensor(g.copy())
        topt.step()
        for got, tp in zip(ours[t], tparams):
            np.testing.assert_allclose(
                got, tp.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {t + 1}"
            )


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
    _, make, _, _, _ = case
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


@PATHS
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_params_without_grad_are_skipped(case, path):
    _, make, _, _, _ = case
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = make([a, b])
    with engine(path):
        b.grad = tl.Tensor(np.ones(2))
        opt.step()
    np.testing.assert_array_equal(a.numpy(), np.ones(3))
    assert not np.allclose(b.numpy(), np.ones(2))
    # a parameter that gets its first gradient late starts its state (step count) from scratch
    with engine(path):
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
    assert math.isclose(norm, 5.0)
    clipped = np.sqrt((a.grad.numpy() ** 2).sum() + (b.grad.numpy() ** 2).sum())
    assert math.isclose(clipped, 1.0, rel_tol=1e-5)
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(b.grad.numpy(), [0.8], rtol=1e-5)
    assert a.grad.dtype == np.float64


def test_clip_grad_norm_leaves_small_gradients_and_skips_missing_ones():
    a, b = Parameter(np.zeros(2, np.float32)), Parameter(np.zeros(3))
    a.grad = tl.Tensor(np.array([0.3, 0.4], np.float32))
    norm = optim.clip_grad_norm_((p for p in [a, b]), max_norm=1.0)
    assert math.isclose(norm, 0.5, rel_tol=1e-6)
    np.testing.assert_array_equal(a.grad.numpy(), np.array([0.3, 0.4], np.float32))
    assert b.grad is None
    assert optim.clip_grad_norm_([b], max_norm=1.0) == 0.0
