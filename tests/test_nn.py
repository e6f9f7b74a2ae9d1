"""tinygrad_lab.nn: the Module tree and its state, Linear's initialisers, the functional layer
maths (linear, losses, penalties) against NumPy and float64 central differences, and one tiny MLP
that overfits a batch on the reference path and with kernels on."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import nn, optim
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import gradcheck
from tinygrad_lab.testing import strategies as tst

ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "gelu"]


def np_act(z: np.ndarray, activation: str | None) -> np.ndarray:
    if activation is None:
        return z
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-z))
    # GELU, tanh approximation
    return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample loss, shape labels.shape: -log_softmax(logits)[..., label]."""
    log_p = np_log_softmax(logits)
    return -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]


# --- the module tree -----------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.register_buffer("running_mean", tl.Tensor(np.zeros(4, np.float32)))

    def forward(self, x: tl.Tensor) -> tl.Tensor:
        return self.fc(x) - self.running_mean


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x: tl.Tensor) -> tl.Tensor:
        return self.head(self.block(x))


NET_PARAMS = [
    "block.fc.weight",
    "block.fc.bias",
    "head.layers.0.weight",
    "head.layers.0.bias",
    "head.layers.2.weight",
    "head.layers.2.bias",
]


def test_sequential_parameter_names():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    names = [name for name, _ in model.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert len(model) == 3 and isinstance(model[1], nn.ReLU)
    assert model.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2


def test_nested_module_names_and_buffers():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == NET_PARAMS
    assert [name for name, _ in net.named_buffers()] == ["block.running_mean"]
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    assert not any(b is p for _, b in net.named_buffers() for p in net.parameters())
    assert sorted(net.state_dict()) == sorted([*NET_PARAMS, "block.running_mean"])
    assert [type(m).__name__ for m in net.modules()][:3] == ["Net", "Block", "Linear"]


def test_reassigning_a_buffer_updates_the_state():
    net = Net()
    net.block.running_mean = tl.Tensor(np.full(4, 7.0, np.float32))
    np.testing.assert_array_equal(net.state_dict()["block.running_mean"], np.full(4, 7.0))
    assert "block.running_mean" not in dict(net.named_parameters())


def test_shared_parameters_are_listed_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Linear(3, 3)
            self.decoder = nn.Linear(3, 3)
            self.decoder.weight = self.encoder.weight  # weight tying
            self.again = self.encoder  # the same module reachable twice

        def forward(self, x: tl.Tensor) -> tl.Tensor:
            return self.decoder(self.encoder(x))

    model = Tied()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["encoder.weight", "encoder.bias", "decoder.bias"]
    assert len(model.parameters()) == 3
    assert model.num_parameters() == 9 + 3 + 3
    # gradients of a tied weight accumulate from both uses
    model(tl.Tensor(np.ones((2, 3), np.float32))).sum().backward()
    assert model.encoder.weight.grad is not None
    state = model.state_dict()
    fresh = Tied()
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.decoder.weight.numpy(), state["encoder.weight"])


def test_state_dict_round_trip():
    tl.manual_seed(0)
    a, b = Net(), Net()
    a.block.running_mean = tl.Tensor(np.arange(4, dtype=np.float32))
    x = tl.Tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    np.testing.assert_array_equal(b.block.running_mean.numpy(), np.arange(4))


def test_state_dict_holds_copies():
    net = Net()
    state = net.state_dict()
    state["block.fc.weight"][...] = 123.0
    assert not np.any(net.block.fc.weight.numpy() == 123.0)


def test_load_state_dict_loads_in_place_and_casts():
    net = Net()
    weight = net.block.fc.weight
    state = {k: v.astype(np.float64) + 1 for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert net.block.fc.weight is weight  # optimizers holding the parameter see the new values
    assert weight.dtype == np.float32
    np.testing.assert_allclose(weight.numpy(), state["block.fc.weight"], rtol=1e-6)


def test_load_state_dict_missing_and_unexpected_keys():
    net = Net()
    state = net.state_dict()
    del state["block.fc.bias"]
    with pytest.raises(KeyError, match=r"missing \['block.fc.bias'\]"):
        net.load_state_dict(state)
    state = net.state_dict()
    state["extra.weight"] = np.zeros(3)
    with pytest.raises(KeyError, match=r"unexpected \['extra.weight'\]"):
        net.load_state_dict(state)
    # strict=False loads what matches and ignores the rest
    state = {"block.fc.bias": np.full(4, 2.0), "extra.weight": np.zeros(3)}
    net.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(net.block.fc.bias.numpy(), np.full(4, 2.0))


def test_load_state_dict_shape_mismatch_names_both_shapes():
    net = Net()
    state = net.state_dict()
    state["head.layers.2.weight"] = np.zeros((4, 3))
    with pytest.raises(ValueError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    assert "head.layers.2.weight" in message
    assert "(4, 3)" in message and "(4, 2)" in message


def test_train_eval_flags_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.head.eval()
    assert net.training and net.block.training
    assert not any(m.training for m in net.head.modules())


def test_zero_grad_clears_every_gradient():
    net = Net()
    net(tl.Tensor(np.ones((2, 3), np.float32))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# --- Linear and its initialisers ------------------------------------------------------------------
def test_linear_default_is_glorot_uniform_with_zero_bias():
    tl.manual_seed(0)
    lin = nn.Linear(300, 200)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    bound = np.sqrt(6 / (300 + 200))
    assert w.shape == (300, 200) and w.dtype == np.float32
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound  # 60 000 draws reach the ends of the interval
    assert abs(w.mean()) < 0.01 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)
    assert b.shape == (200,) and b.dtype == np.float32 and not b.any()


@pytest.mark.parametrize(
    "init, bound",
    [("he_uniform", np.sqrt(6 / 300)), ("fan_in_uniform", np.sqrt(1 / 300))],
)
def test_linear_uniform_initialisers_bounds(init, bound):
    tl.manual_seed(1)
    w = nn.Linear(300, 200, init=init).weight.numpy()
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.02)


def test_linear_he_normal_std():
    tl.manual_seed(2)
    w = nn.Linear(300, 200, init="he_normal").weight.numpy()
    np.testing.assert_allclose(w.std(), np.sqrt(2 / 300), rtol=0.02)
    assert abs(w.mean()) < 0.01 * np.sqrt(2 / 300)


def test_linear_unknown_init_raises():
    with pytest.raises(ValueError, match="xavier_magic"):
        nn.Linear(3, 4, init="xavier_magic")


def test_linear_init_is_seeded():
    tl.manual_seed(5)
    a = nn.Linear(4, 3).weight.numpy()
    tl.manual_seed(5)
    b = nn.Linear(4, 3).weight.numpy()
    np.testing.assert_array_equal(a, b)


def test_linear_options_and_3d_input():
    lin = nn.Linear(3, 5, bias=False, activation="tanh", dtype=np.float64)
    assert lin.bias is None and [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin.weight.dtype == np.float64
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    y = lin(tl.Tensor(x))
    assert y.shape == (2, 4, 5)
    np.testing.assert_allclose(y.numpy(), np.tanh(x @ lin.weight.numpy()), rtol=1e-12)


# --- functional.linear ----------------------------------------------------------------------------
@st.composite
def linear_inputs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lead = draw(tst.shapes(min_dims=1, max_dims=2, max_side=3))  # (B,) or (B, T)
    fan_in, fan_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(tst.arrays((*lead, fan_in), low=-2, high=2))
    w = draw(tst.arrays((fan_in, fan_out), low=-2, high=2))
    b = draw(tst.arrays((fan_out,), low=-2, high=2))
    return x, w, b


@given(inputs=linear_inputs(), activation=st.sampled_from(ACTIVATIONS), use_bias=st.booleans())
def test_linear_matches_numpy_and_gradcheck(inputs, activation, use_bias):
    x, w, b = inputs
    pre = x @ w + (b if use_bias else 0)
    if activation == "relu":
        assume(np.abs(pre).min() > 1e-3)  # away from relu's kink
    args = (x, w, b) if use_bias else (x, w)
    tensors = [tl.Tensor(a) for a in args]
    out = F.linear(*tensors[:2], tensors[2] if use_bias else None, activation)
    assert out.shape == (*x.shape[:-1], w.shape[1]) and out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), np_act(pre, activation), rtol=1e-10, atol=1e-12)

    def fn(*ts: tl.Tensor) -> tl.Tensor:
        return F.linear(ts[0], ts[1], ts[2] if use_bias else None, activation)

    assert gradcheck(fn, *args)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
def test_linear_gradcheck_3d_each_activation(activation, use_bias, cpu_path):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    args = (x, w, b) if use_bias else (x, w)
    assert gradcheck(
        lambda *ts: F.linear(ts[0], ts[1], ts[2] if use_bias else None, activation), *args
    )


def test_linear_shape_mismatch_names_both_shapes():
    x, w = tl.Tensor(np.zeros((2, 3))), tl.Tensor(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=re.escape("(2, 3)")) as info:
        F.linear(x, w)
    assert "(4, 5)" in str(info.value)
    with pytest.raises(ValueError, match="bias"):
        F.linear(tl.Tensor(np.zeros((2, 4))), w, tl.Tensor(np.zeros(4)))
    with pytest.raises(ValueError, match="swish"):
        F.linear(tl.Tensor(np.zeros((2, 4))), w, activation="swish")


# --- cross-entropy --------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_numpy(reduction, cpu_path):
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, size=6)
    got = F.cross_entropy(tl.Tensor(logits), labels, reduction=reduction)
    per_sample = np_cross_entropy(logits, labels)
    want = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    assert got.dtype == np.float64 and got.shape == np.shape(want)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(reduction, cpu_path):
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    assert gradcheck(lambda z: F.cross_entropy(z, labels, reduction=reduction), logits)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_3d_logits(reduction, cpu_path):
    rng = np.random.default_rng(2)
    logits, labels = rng.standard_normal((2, 3, 4)), rng.integers(0, 4, size=(2, 3))
    per_sample = np_cross_entropy(logits, labels)
    want = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    got = F.cross_entropy(tl.Tensor(logits), tl.Tensor(labels), reduction=reduction)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert gradcheck(lambda z: F.cross_entropy(z, labels, reduction=reduction), logits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_is_stable_for_huge_logits(dtype, reduction, cpu_path):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [5.0, 5.0, -1e4]], dtype=dtype)
    labels = np.array([0, 0, 1])
    # exact: 0; 2e4 + log 2; log 2
    want = np.array([0.0, 2e4 + np.log(2), np.log(2)])
    z = tl.Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, labels, reduction=reduction)
    got = loss.numpy()
    assert np.all(np.isfinite(got))
    expected = {"mean": want.mean(), "sum": want.sum(), "none": want}[reduction]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    (loss.sum() if reduction == "none" else loss).backward()
    assert np.all(np.isfinite(z.grad.numpy()))
    np.testing.assert_allclose(z.grad.numpy().sum(axis=-1), 0.0, atol=1e-6)


def test_cross_entropy_rejects_float_labels():
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.array([0.0, 1.0]))


@pytest.mark.parametrize("bad", [[0, 3], [-1, 0]])
def test_cross_entropy_rejects_out_of_range_labels(bad):
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.array(bad))


@pytest.mark.parametrize("shape", [(3,), (2, 1), ()])
def test_cross_entropy_rejects_wrong_label_shape(shape):
    with pytest.raises(ValueError, match=re.escape(str(shape))) as info:
        F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.zeros(shape, dtype=np.int64))
    assert "(2, 3)" in str(info.value)


def test_cross_entropy_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="batchmean"):
        F.cross_entropy(tl.Tensor(np.zeros((2, 3))), np.array([0, 1]), reduction="batchmean")


# --- mse and penalties ----------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss_value_and_gradcheck(reduction):
    rng = np.random.default_rng(4)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    got = F.mse_loss(tl.Tensor(pred), target, reduction=reduction).item()
    sq = (pred - target) ** 2
    assert np.isclose(got, sq.mean() if reduction == "mean" else sq.sum(), rtol=1e-12)
    assert gradcheck(lambda p: F.mse_loss(p, target, reduction=reduction), pred)


def test_mse_loss_differentiates_both_arguments_as_torch():
    pred = tl.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    target = tl.Tensor(np.array([0.0, 0.0]), requires_grad=True)
    F.mse_loss(pred, target).backward()
    np.testing.assert_allclose(pred.grad.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(target.grad.numpy(), [-1.0, -2.0])


def test_mse_loss_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(4, 1)")) as info:
        F.mse_loss(tl.Tensor(np.zeros((4, 1))), np.zeros(4))
    assert "(4,)" in str(info.value)
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(tl.Tensor(np.zeros(2)), np.zeros(2), reduction="avg")


def test_l1_and_l2_penalties_values_and_gradients():
    a = nn.Parameter(np.array([[1.0, -2.0], [0.5, -0.25]]))
    b = nn.Parameter(np.array([3.0, -4.0]))
    l1 = F.l1_penalty([a, b], scale=0.1)
    assert np.isclose(l1.item(), 0.1 * (3.75 + 7.0))
    l1.backward()
    np.testing.assert_allclose(a.grad.numpy(), 0.1 * np.sign(a.numpy()))
    np.testing.assert_allclose(b.grad.numpy(), 0.1 * np.sign(b.numpy()))
    a.grad = b.grad = None
    l2 = F.l2_penalty([a, b], scale=0.5)
    assert np.isclose(l2.item(), 0.5 * ((a.numpy() ** 2).sum() + 25.0))
    l2.backward()
    np.testing.assert_allclose(a.grad.numpy(), 2 * 0.5 * a.numpy())
    np.testing.assert_allclose(b.grad.numpy(), 2 * 0.5 * b.numpy())
    assert gradcheck(lambda x, y: F.l2_penalty([x, y], 0.3), a.numpy(), b.numpy())
    assert gradcheck(lambda x, y: F.l1_penalty([x, y], 0.3), a.numpy(), b.numpy())


# --- end to end -----------------------------------------------------------------------------------
def test_tiny_mlp_overfits_one_batch(cpu_path):
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    x = tl.Tensor(rng.standard_normal((32, 8)).astype(np.float32))
    labels = rng.integers(0, 4, size=32)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_nll_loss_of_log_softmax_is_cross_entropy():
    rng = np.random.default_rng(6)
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, size=5)
    nll = F.nll_loss(F.log_softmax(tl.Tensor(logits)), labels)
    assert np.isclose(nll.item(), np_cross_entropy(logits, labels).mean(), rtol=1e-12)
    assert gradcheck(lambda z: F.nll_loss(F.log_softmax(z), labels), logits)
