"""Optimizer trajectories against torch.optim in float64: every optimizer with two parameter
groups of their own hyper-parameters, RMSprop centered and with momentum, state_dict round
trips in mid-run, and schedulers over parameter groups."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import tinygrad_lab as tl
from tinygrad_lab import optim, schedulers

STEPS = 6

# (name, our class, torch's class, defaults, the second group's own hyper-parameters)
CASES = [
    ("sgd", optim.SGD, torch.optim.SGD, {"lr": 0.1}, {"lr": 0.03}),
    ("sgd-momentum", optim.SGD, torch.optim.SGD,
     {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, {"momentum": 0.5, "dampening": 0.1}),
    ("sgd-nesterov", optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True},
     {"lr": 0.2, "weight_decay": 0.1}),
    ("adam", optim.Adam, torch.optim.Adam, {"lr": 0.01}, {"betas": (0.8, 0.99), "eps": 1e-6}),
    ("adam-wd", optim.Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.1}),
    ("adamw", optim.AdamW, torch.optim.AdamW, {"lr": 0.01}, {"weight_decay": 0.5}),
    ("rmsprop", optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01}, {"alpha": 0.9}),
    ("rmsprop-centered", optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "centered": True},
     {"momentum": 0.9, "weight_decay": 0.1}),
    ("rmsprop-momentum", optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.8},
     {"centered": True, "lr": 0.003}),
    ("adagrad", optim.Adagrad, torch.optim.Adagrad, {"lr": 0.1}, {"lr": 0.5, "eps": 1e-6}),
]


def _problem(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((2,))]
    targets = [rng.standard_normal(p.shape) for p in params]
    return params, targets


def _loss(params, targets):
    # a non-quadratic loss, so the gradients change along the trajectory
    return sum(((p - t) ** 2).sum() + (p**4).sum() * 0.1 for p, t in zip(params, targets))


def _run_ours(cls, defaults, second, steps=STEPS, params=None, opt_state=None):
    init, targets = _problem()
    ps = [tl.Tensor(a.copy(), requires_grad=True) for a in (params or init)]
    opt = cls([{"params": ps[:2]}, {"params": ps[2:], **second}], **defaults)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    for _ in range(steps):
        opt.zero_grad()
        _loss(ps, [tl.Tensor(t) for t in targets]).backward()
        opt.step()
    return [p.numpy() for p in ps], opt


def _run_torch(cls, defaults, second, steps=STEPS):
    init, targets = _problem()
    ps = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = cls([{"params": ps[:2]}, {"params": ps[2:], **second}], **defaults)
    for _ in range(steps):
        opt.zero_grad()
        _loss(ps, [torch.tensor(t) for t in targets]).backward()
        opt.step()
    return [p.detach().numpy() for p in ps]


@pytest.mark.parametrize("name,ours,theirs,defaults,second", CASES, ids=[c[0] for c in CASES])
def test_trajectory_with_two_parameter_groups_matches_torch(name, ours, theirs, defaults,
                                                            second):
    got, opt = _run_ours(ours, defaults, second)
    want = _run_torch(theirs, defaults, second)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    assert opt.param_groups[1]["lr"] == second.get("lr", defaults["lr"])


@pytest.mark.parametrize("name,ours,theirs,defaults,second", CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip_resumes_the_same_trajectory(name, ours, theirs, defaults, second):
    whole, _ = _run_ours(ours, defaults, second, steps=STEPS)
    half, opt = _run_ours(ours, defaults, second, steps=STEPS // 2)
    state = copy.deepcopy(opt.state_dict())
    assert [g["params"] for g in state["param_groups"]] == [[0, 1], [2]]
    # a fresh optimizer built with other hyper-parameters takes the saved ones
    resumed, _ = _run_ours(ours, {**defaults, "lr": 123.0}, {}, steps=STEPS - STEPS // 2,
                           params=half, opt_state=state)
    for a, b in zip(whole, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_parameter_groups_are_checked():
    a, b = (tl.Tensor(np.zeros(2), requires_grad=True) for _ in range(2))
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a, b]}], lr=0.1)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        optim.SGD([{"params": [a], "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([{"params": [a], "lr": -1.0}])
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([{"params": [a]}, {"params": [b], "nesterov": True}], lr=0.1, momentum=0.0)
    opt = optim.SGD(a, lr=0.1)  # one tensor, as torch accepts
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5] and opt.params == [a, b]
    with pytest.raises(ValueError, match="parameter groups of sizes"):
        optim.SGD([a, b], lr=0.1).load_state_dict(opt.state_dict())


def test_schedulers_scale_each_group_from_its_own_base_as_torch():
    init, _ = _problem()
    ours = [tl.Tensor(a, requires_grad=True) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    o = optim.SGD([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.02}], lr=0.1)
    t = torch.optim.SGD([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.02}], lr=0.1)
    o_sched = [schedulers.LinearWarmup(o, 3), schedulers.CosineAnnealingLR(o, 5)]
    t_sched = [torch.optim.lr_scheduler.LinearLR(t, 1 / 3, 1.0, 2),
               torch.optim.lr_scheduler.CosineAnnealingLR(t, 5)]
    for _ in range(8):
        for s in o_sched:
            s.step()
        for s in t_sched:
            s.step()
        np.testing.assert_allclose([g["lr"] for g in o.param_groups],
                                   [g["lr"] for g in t.param_groups], rtol=1e-12)
        assert o_sched[-1].get_last_lr() == [g["lr"] for g in o.param_groups]


def test_fit_resume_restores_each_group_s_learning_rate(tmp_path):
    import os
    import signal

    from tinygrad_lab import nn
    from tinygrad_lab.nn import functional as F
    from tinygrad_lab.train import Checkpointing, Interrupted, LambdaCallback, fit

    x = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def setup():
        tl.manual_seed(0)
        model = nn.Linear(4, 2)
        opt = optim.Adam([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.1}],
                         lr=0.01)
        return model, opt, [schedulers.CosineAnnealingLR(opt, T_max=8)]

    def run(model, opt, scheds, path, stop_at=0, resume=None):
        def maybe_stop(index, logs):
            if stop_at and hook.loop.step == stop_at:
                os.kill(os.getpid(), signal.SIGINT)

        hook = LambdaCallback(on_train_batch_end=maybe_stop)
        return fit(model, lambda epoch: iter([(x[:8], y[:8]), (x[8:], y[8:])]),
                   lambda m, b: F.cross_entropy(m(b[0]), b[1]), [opt], epochs=3,
                   schedulers=scheds, callbacks=[hook],
                   checkpoint=Checkpointing(tmp_path / path, meta={"recipe": "test"}),
                   resume=resume)

    model, opt, scheds = setup()
    run(model, opt, scheds, "ref.npz")
    expected = [g["lr"] for g in opt.param_groups]
    model, opt, scheds = setup()
    with pytest.raises(Interrupted):
        run(model, opt, scheds, "run.npz", stop_at=3)
    model, opt, scheds = setup()
    run(model, opt, scheds, "run.npz", resume=tmp_path / "run.npz")
    assert [g["lr"] for g in opt.param_groups] == expected
    assert expected[1] == pytest.approx(10 * expected[0])
