"""tinygrad_lab.nn.losses against torch.nn.functional (values and gradients in float64, on
hypothesis shapes including 0 rows where torch defines the value), gradchecked; and the loss
layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import nn
from tinygrad_lab.nn import functional as F
from tinygrad_lab.nn import losses
from tinygrad_lab.testing import gradcheck

REDUCTIONS = ["mean", "sum", "none"]


def _compare(ours_fn, theirs_fn, arrays, grads=None, rtol=1e-10, atol=1e-12):
    """Run both on float64 copies of `arrays`; compare values and each float input's gradient
    (for a seeded upstream gradient). `grads` marks which arrays are differentiated."""
    grads = grads or [a.dtype.kind == "f" for a in arrays]
    ours = [tl.Tensor(a, requires_grad=g) if g else a for a, g in zip(arrays, grads)]
    theirs = [torch.tensor(a, requires_grad=g) for a, g in zip(arrays, grads)]
    out = ours_fn(*ours)
    ref = theirs_fn(*theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=rtol, atol=atol)
    if not any(grads) or not np.all(np.isfinite(ref.detach().numpy())) or ref.numel() == 0:
        return
    seed = np.random.default_rng(0).standard_normal(ref.shape)
    out.backward(seed)
    ref.backward(torch.tensor(seed))
    for t, r, g in zip(ours, theirs, grads):
        if g:
            np.testing.assert_allclose(t.grad.numpy(), r.grad.numpy(), rtol=rtol, atol=atol)


def _labels(rng, n, classes, ignore=False):
    labels = rng.integers(0, classes, size=n)
    if ignore and n:
        labels[rng.random(n) < 0.3] = -100
    return labels


cases = st.tuples(st.integers(0, 5), st.integers(1, 5), st.integers(0, 2**31 - 1))


# --- cross entropy / nll -----------------------------------------------------------------------
@settings(max_examples=30)
@given(cases, st.sampled_from(REDUCTIONS), st.booleans(), st.booleans(),
       st.sampled_from([0.0, 0.1, 0.5]))
def test_cross_entropy_matches_torch(case, reduction, weighted, ignore, smoothing):
    n, classes, seed = case
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, classes))
    labels = _labels(rng, n, classes, ignore)
    weight = rng.uniform(0.5, 2.0, classes) if weighted else None

    def ours(x):
        return F.cross_entropy(x, labels, weight=weight, reduction=reduction,
                               label_smoothing=smoothing)

    def theirs(x):
        w = None if weight is None else torch.tensor(weight)
        return TF.cross_entropy(x, torch.tensor(labels), weight=w, reduction=reduction,
                                label_smoothing=smoothing)

    _compare(ours, theirs, [logits])
    if n and (labels != -100).any():
        assert gradcheck(ours, logits)


@settings(max_examples=20)
@given(cases, st.sampled_from(REDUCTIONS), st.booleans(), st.sampled_from([0.0, 0.2]))
def test_cross_entropy_with_probability_targets_matches_torch(case, reduction, weighted,
                                                              smoothing):
    n, classes, seed = case
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, classes))
    probs = rng.dirichlet(np.ones(classes), size=n).reshape(n, classes)
    weight = rng.uniform(0.5, 2.0, classes) if weighted else None
    w_t = None if weight is None else torch.tensor(weight)
    _compare(lambda x, p: F.cross_entropy(x, p, weight=weight, reduction=reduction,
                                          label_smoothing=smoothing),
             lambda x, p: TF.cross_entropy(x, p, weight=w_t, reduction=reduction,
                                           label_smoothing=smoothing),
             [logits, probs])


def test_cross_entropy_plain_case_keeps_the_fused_node_and_leading_axes():
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((2, 3, 5)), rng.integers(0, 5, (2, 3))
    out = F.cross_entropy(tl.Tensor(logits, requires_grad=True), labels)
    assert out._ctx.name == "SoftmaxCrossEntropy"
    ref = TF.cross_entropy(torch.tensor(logits).reshape(6, 5), torch.tensor(labels).reshape(6))
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6)
    none = F.cross_entropy(tl.Tensor(logits), labels, reduction="none")
    assert none.shape == (2, 3)


def test_cross_entropy_edge_cases_are_torch_s():
    empty = F.cross_entropy(tl.Tensor(np.zeros((0, 3))), np.zeros(0, np.int64))
    assert np.isnan(empty.item())  # mean over 0 rows: nan, as torch
    all_ignored = F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.array([-100, -100]))
    assert np.isnan(all_ignored.item())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.array([0, 3]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="weight shape"):
        F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.array([0, 1]), weight=np.ones(2))


@settings(max_examples=20)
@given(cases, st.sampled_from(REDUCTIONS), st.booleans(), st.booleans())
def test_nll_loss_matches_torch(case, reduction, weighted, ignore):
    n, classes, seed = case
    rng = np.random.default_rng(seed)
    logp = rng.standard_normal((n, classes))
    labels = _labels(rng, n, classes, ignore)
    weight = rng.uniform(0.5, 2.0, classes) if weighted else None
    w_t = None if weight is None else torch.tensor(weight)
    _compare(lambda x: F.nll_loss(x, labels, weight=weight, reduction=reduction),
             lambda x: TF.nll_loss(x, torch.tensor(labels), weight=w_t, reduction=reduction),
             [logp])


# --- elementwise losses ------------------------------------------------------------------------
shapes = st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple)


def _pair(shape, seed, low=-2.0, high=2.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape), rng.uniform(low, high, shape)


ELEMENTWISE = {
    "mse": (lambda x, y, r: F.mse_loss(x, y, r), lambda x, y, r: TF.mse_loss(x, y, reduction=r)),
    "l1": (lambda x, y, r: F.l1_loss(x, y, r), lambda x, y, r: TF.l1_loss(x, y, reduction=r)),
    "smooth_l1": (lambda x, y, r: F.smooth_l1_loss(x, y, r, beta=0.7),
                  lambda x, y, r: TF.smooth_l1_loss(x, y, reduction=r, beta=0.7)),
    "smooth_l1_beta0": (lambda x, y, r: F.smooth_l1_loss(x, y, r, beta=0.0),
                        lambda x, y, r: TF.smooth_l1_loss(x, y, reduction=r, beta=0.0)),
    "huber": (lambda x, y, r: F.huber_loss(x, y, r, delta=1.3),
              lambda x, y, r: TF.huber_loss(x, y, reduction=r, delta=1.3)),
    "bce_logits": (lambda x, y, r: F.binary_cross_entropy_with_logits(x, y, reduction=r),
                   lambda x, y, r: TF.binary_cross_entropy_with_logits(x, y, reduction=r)),
}


@settings(max_examples=15)
@given(st.sampled_from(sorted(ELEMENTWISE)), shapes, st.sampled_from(REDUCTIONS),
       st.integers(0, 2**31 - 1))
def test_elementwise_losses_match_torch_in_both_arguments(name, shape, reduction, seed):
    ours, theirs = ELEMENTWISE[name]
    x, y = _pair(shape, seed)
    if name.startswith("bce"):
        y = (y + 2) / 4  # targets in [0, 1]
    _compare(lambda a, b: ours(a, b, reduction), lambda a, b: theirs(a, b, reduction), [x, y])
    if x.size:
        assert gradcheck(lambda a, b: ours(a, b, reduction), x, y)


def test_mse_loss_differentiates_the_target_too():
    x = tl.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = tl.Tensor(np.array([0.0, 0.0]), requires_grad=True)
    F.mse_loss(x, y).backward()
    np.testing.assert_allclose(y.grad.numpy(), [-1.0, -2.0])


@settings(max_examples=20)
@given(shapes, st.sampled_from(REDUCTIONS), st.booleans(), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_bce_with_logits_weights_match_torch(shape, reduction, weighted, pos, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-30, 30, shape)  # far out: the stable form must not overflow
    y = rng.uniform(0, 1, shape)
    w = rng.uniform(0.5, 2, shape[-1:]) if weighted else None
    pw = rng.uniform(0.5, 3, shape[-1:]) if pos else None

    def t(a):
        return None if a is None else torch.tensor(a)

    _compare(lambda a, b: F.binary_cross_entropy_with_logits(a, b, w, reduction, pw),
             lambda a, b: TF.binary_cross_entropy_with_logits(a, b, t(w), reduction=reduction,
                                                             pos_weight=t(pw)),
             [x, y], rtol=1e-9, atol=1e-10)


@settings(max_examples=20)
@given(shapes, st.sampled_from(REDUCTIONS), st.booleans(), st.integers(0, 2**31 - 1))
def test_binary_cross_entropy_matches_torch(shape, reduction, weighted, seed):
    rng = np.random.default_rng(seed)
    p, y = rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)
    w = rng.uniform(0.5, 2, shape) if weighted else None
    _compare(lambda a, b: F.binary_cross_entropy(a, b, w, reduction),
             lambda a, b: TF.binary_cross_entropy(a, b, None if w is None else torch.tensor(w),
                                                  reduction=reduction),
             [p, y])
    if p.size:
        assert gradcheck(lambda a: F.binary_cross_entropy(a, y, w, reduction), p)
    # the logs are clamped at -100, as torch's: p = 0 and 1 give finite losses
    edge = F.binary_cross_entropy(tl.Tensor(np.array([0.0, 1.0])), np.array([1.0, 0.0]), None,
                                  "none")
    np.testing.assert_allclose(edge.numpy(), [100.0, 100.0])


@settings(max_examples=20)
@given(shapes, st.sampled_from([*REDUCTIONS, "batchmean"]), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_kl_div_matches_torch(shape, reduction, log_target, seed):
    rng = np.random.default_rng(seed)
    x = np.log(rng.uniform(0.05, 1, shape))
    y = rng.uniform(0.05, 1, shape)
    if not log_target and y.size:
        y.reshape(-1)[0] = 0.0  # xlogy: a zero target contributes 0
    if log_target:
        y = np.log(y)
    if reduction == "batchmean" and shape[0] == 0:
        return  # torch divides 0 by a batch of 0 as we do (nan); nothing to compare in grad
    _compare(lambda a, b: F.kl_div(a, b, reduction, log_target),
             lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target),
             [x, y], grads=[True, log_target])
    if x.size:
        assert gradcheck(lambda a: F.kl_div(a, y, reduction, log_target), x)


@settings(max_examples=20)
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from([0, 1, -1]),
       st.integers(0, 2**31 - 1))
def test_cosine_similarity_matches_torch(n, d, dim, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0.5, 2, (n, d)), rng.uniform(-2, 2, (n, d))
    _compare(lambda a, b: F.cosine_similarity(a, b, dim=dim),
             lambda a, b: TF.cosine_similarity(a, b, dim=dim), [x1, x2])
    assert gradcheck(lambda a, b: F.cosine_similarity(a, b, dim=dim), x1, x2)


def test_loss_layers_call_their_functionals():
    rng = np.random.default_rng(0)
    x, y = tl.Tensor(rng.standard_normal((4, 3))), rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    pairs = [
        (nn.CrossEntropyLoss(label_smoothing=0.1), F.cross_entropy(x, labels,
                                                                   label_smoothing=0.1), labels),
        (nn.NLLLoss(reduction="sum"), F.nll_loss(x, labels, reduction="sum"), labels),
        (nn.MSELoss(), F.mse_loss(x, y), y),
        (nn.L1Loss(), F.l1_loss(x, y), y),
        (nn.SmoothL1Loss(beta=0.5), F.smooth_l1_loss(x, y, beta=0.5), y),
        (nn.HuberLoss(delta=2.0), F.huber_loss(x, y, delta=2.0), y),
        (nn.BCEWithLogitsLoss(), F.binary_cross_entropy_with_logits(x, y), y),
        (nn.KLDivLoss(reduction="batchmean"), F.kl_div(x, y, "batchmean"), y),
    ]
    for layer, expected, target in pairs:
        np.testing.assert_allclose(layer(x, target).numpy(), expected.numpy())
    assert isinstance(nn.CosineSimilarity(dim=1)(x, x), tl.Tensor)
    assert losses.cross_entropy is F.cross_entropy


def test_every_loss_runs_on_a_non_cpu_device_without_host_arrays():
    # the stand-in device refuses NumPy arrays inside its maths, as CuPy does
    from tinygrad_lab.testing import standin

    rng = np.random.default_rng(0)
    dev = standin.NAME
    x = tl.Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    xs = x.to(dev)
    y = tl.Tensor(rng.uniform(0, 1, (4, 3))).to(dev)
    labels = tl.Tensor(np.array([0, 2, -100, 1]), dtype=np.int64).to(dev)
    w = tl.Tensor(np.array([1.0, 2.0, 0.5])).to(dev)
    outs = [
        F.cross_entropy(xs, labels, weight=w, label_smoothing=0.1),
        F.cross_entropy(xs, labels, reduction="none"),
        F.cross_entropy(xs, y),
        F.nll_loss(xs, labels, weight=w, reduction="sum"),
        F.mse_loss(xs, y), F.l1_loss(xs, y), F.smooth_l1_loss(xs, y), F.huber_loss(xs, y),
        F.binary_cross_entropy(y, y), F.binary_cross_entropy_with_logits(xs, y, pos_weight=w),
        F.kl_div(xs, y, "batchmean"), F.cosine_similarity(xs, y).sum(),
    ]
    total = outs[0]
    for out in outs[1:]:
        assert out.device == xs.device
        total = total + out.sum()
    total.backward()
    assert x.grad is not None and np.all(np.isfinite(x.grad.numpy()))


def test_clip_grad_norm_reads_nothing_back():
    from tinygrad_lab import optim
    from tinygrad_lab.testing import standin

    params = [tl.Tensor(np.zeros(s), requires_grad=True).to(standin.NAME) for s in (3, (2, 2), 5)]
    for p in params:
        p.requires_grad_(True)
        p.grad = tl.Tensor(np.ones(p.shape)).to(standin.NAME)
    with standin.counting() as log:
        total = optim.clip_grad_norm_(params, 1.0)
    assert log == []  # the norm and the clip coefficient stay on the device
    assert isinstance(total.data, standin.StandinArray) and total.shape == ()
    assert total.item() == pytest.approx(np.sqrt(12.0))
