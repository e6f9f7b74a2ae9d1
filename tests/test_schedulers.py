"""Learning-rate schedulers: closed-form values, composition, and torch.optim.lr_scheduler's
values over 20 steps when torch is importable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinygrad_lab import Tensor, optim, schedulers

STEPS = 20


def make_opt(lr: float = 0.1, cls: type = optim.SGD) -> optim.Optimizer:
    return cls([Tensor(np.zeros(3), requires_grad=True)], lr=lr)


def run_ours(build, lr: float = 0.1) -> list[float]:
    """lr at construction, then after each of STEPS steps (as opt.lr and get_last_lr agree)."""
    opt = make_opt(lr)
    sched = build(opt)
    lrs = [sched.get_last_lr()[0]]
    assert lrs[0] == opt.lr
    for _ in range(STEPS):
        opt.step()
        sched.step()
        assert sched.get_last_lr() == [opt.lr]
        lrs.append(opt.lr)
    return lrs


def run_torch(torch, build, lr: float = 0.1) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=lr)
    sched = build(opt, torch.optim.lr_scheduler)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(STEPS):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


# (name, ours, torch's) builders
CASES = [
    ("step", lambda o: schedulers.StepLR(o, step_size=4, gamma=0.5),
     lambda o, T: T.StepLR(o, step_size=4, gamma=0.5)),
    ("cosine", lambda o: schedulers.CosineAnnealingLR(o, T_max=20),
     lambda o, T: T.CosineAnnealingLR(o, T_max=20)),
    ("cosine-eta-min-past-T-max", lambda o: schedulers.CosineAnnealingLR(o, 7, eta_min=0.01),
     lambda o, T: T.CosineAnnealingLR(o, 7, eta_min=0.01)),
    ("linear", lambda o: schedulers.LinearLR(o),
     lambda o, T: T.LinearLR(o)),
    ("linear-decay", lambda o: schedulers.LinearLR(o, 1.0, 0.1, 12),
     lambda o, T: T.LinearLR(o, 1.0, 0.1, 12)),
    ("warmup", lambda o: schedulers.LinearWarmup(o, 6),
     lambda o, T: T.LinearLR(o, start_factor=1 / 6, end_factor=1.0, total_iters=5)),
    ("warmup-then-cosine",
     lambda o: schedulers.SequentialLR(
         o, [schedulers.LinearWarmup(o, 5), schedulers.CosineAnnealingLR(o, 15, 0.001)], [5]),
     lambda o, T: T.SequentialLR(
         o, [T.LinearLR(o, 1 / 5, 1.0, 4), T.CosineAnnealingLR(o, 15, 0.001)], [5])),
    ("three-phases",
     lambda o: schedulers.SequentialLR(o, [schedulers.LinearWarmup(o, 3),
                                           schedulers.StepLR(o, 2, 0.5),
                                           schedulers.CosineAnnealingLR(o, 8)], [3, 9]),
     lambda o, T: T.SequentialLR(o, [T.LinearLR(o, 1 / 3, 1.0, 2), T.StepLR(o, 2, 0.5),
                                     T.CosineAnnealingLR(o, 8)], [3, 9])),
]


@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_schedules_match_torch_over_twenty_steps(name, ours, theirs):
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(run_ours(ours), run_torch(torch, theirs), rtol=1e-10, atol=1e-15)


# --- closed forms, without torch ----------------------------------------------------------------
def test_step_lr_values():
    assert run_ours(lambda o: schedulers.StepLR(o, 3, 0.1))[:8] == pytest.approx(
        [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001])


def test_cosine_reaches_eta_min_at_t_max_and_halfway_is_the_mean():
    lrs = run_ours(lambda o: schedulers.CosineAnnealingLR(o, T_max=10, eta_min=0.02))
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx((0.1 + 0.02) / 2)
    assert lrs[10] == pytest.approx(0.02)
    assert lrs[20] == pytest.approx(0.1)  # past T_max the cosine comes back up, as in PyTorch
    assert all(a >= b for a, b in zip(lrs[:11], lrs[1:11]))


def test_linear_warmup_ramps_to_the_base_and_stays():
    lrs = run_ours(lambda o: schedulers.LinearWarmup(o, 4), lr=0.8)
    assert lrs[:7] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 0.8])
    assert run_ours(lambda o: schedulers.LinearWarmup(o, 1))[:2] == pytest.approx([0.1, 0.1])


def test_sequential_restarts_each_schedule_at_its_milestone():
    def build(o):
        return schedulers.SequentialLR(
            o, [schedulers.LinearWarmup(o, 2), schedulers.CosineAnnealingLR(o, 4)], [2])

    lrs = run_ours(build)
    expected = [0.05, 0.1] + [0.05 * (1 + math.cos(math.pi * t / 4)) for t in range(5)]
    assert lrs[:7] == pytest.approx(expected)


def test_schedulers_share_the_initial_lr_and_construction_sets_step_zero():
    opt = make_opt(1.0)
    warm = schedulers.LinearWarmup(opt, 4)
    assert opt.lr == pytest.approx(0.25) and opt.param_groups[0]["initial_lr"] == 1.0
    cosine = schedulers.CosineAnnealingLR(opt, 10)  # made after the warm-up lowered opt.lr
    # the base is shared; the step-0 lr is the current one (torch's chainable form)
    assert cosine.base_lr == 1.0 and opt.lr == pytest.approx(0.25)
    assert warm.base_lr == 1.0


def test_the_optimizer_uses_the_scheduled_lr():
    p = Tensor(np.array([1.0]), requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    sched = schedulers.StepLR(opt, step_size=1, gamma=0.5)
    for expected in (0.0, -0.5, -0.75):  # steps of 1.0, 0.5, 0.25 against a gradient of 1
        p.grad = Tensor(np.array([1.0]))
        opt.step()
        sched.step()
        np.testing.assert_allclose(p.numpy(), [expected])


def test_state_dict_round_trip_resumes_the_schedule():
    a_opt = make_opt()
    a = schedulers.CosineAnnealingLR(a_opt, 10)
    for _ in range(4):
        a.step()
    b_opt = make_opt()
    b = schedulers.CosineAnnealingLR(b_opt, 10)
    b.load_state_dict(a.state_dict())
    assert b_opt.lr == a_opt.lr and b.last_epoch == 4
    a.step()
    b.step()
    assert b_opt.lr == a_opt.lr


def test_bad_arguments_are_named():
    opt = make_opt()
    with pytest.raises(ValueError, match="step_size must be >= 1"):
        schedulers.StepLR(opt, 0)
    with pytest.raises(ValueError, match="T_max must be >= 1"):
        schedulers.CosineAnnealingLR(opt, 0)
    with pytest.raises(ValueError, match="warmup_steps must be >= 1"):
        schedulers.LinearWarmup(opt, 0)
    with pytest.raises(ValueError, match="start_factor"):
        schedulers.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="2 schedulers need 1 milestones, got 0"):
        schedulers.SequentialLR(opt, [schedulers.StepLR(opt, 1), schedulers.StepLR(opt, 1)], [])
    with pytest.raises(ValueError, match="another optimizer"):
        schedulers.SequentialLR(opt, [schedulers.StepLR(make_opt(), 1)], [])
    with pytest.raises(TypeError, match="optimizer with an `lr`"):
        schedulers.StepLR(object(), 1)


def test_optim_re_exports_the_schedulers():
    for name in schedulers.__all__:
        assert getattr(optim, name) is getattr(schedulers, name)
