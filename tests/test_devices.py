"""The device registry and the stand-in device.

- registry: names parse to (type, index), the index is kept ('cuda:1' is its own backend), bad
  names fail with one clear line, a device type can be registered (the stand-in is);
- cuda without CuPy or a GPU fails in one line naming the `cuda` extra or the driver;
- the stand-in can fail: a host array in its maths, a module attribute `.to()` did not move;
- every layer of tinygrad_lab.nn runs forward and backward on the stand-in (and on each device
  of the `device` fixture) with the CPU reference path's results; so do the optimizers;
- buffers move with `Module.to`, non-persistent ones stay out of state_dict.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import Tensor, nn, optim
from tinygrad_lab.backends import (
    DEFAULT_DEVICE,
    DEVICES,
    Backend,
    DeviceType,
    canonical_device,
    get_backend,
    parse_device,
    register_device,
    unregister_device,
)
from tinygrad_lab.function import Function
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import standin
from tinygrad_lab.testing.devices import DeviceCase, cuda_skip_reason
from tinygrad_lab.testing.standin import HostArrayError, StandinArray

SI = standin.NAME  # registered by conftest


# --- the registry -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, parsed, full", [
    ("cpu", ("cpu", 0), "cpu"),
    ("cuda", ("cuda", 0), "cuda:0"),
    ("cuda:0", ("cuda", 0), "cuda:0"),
    ("cuda:3", ("cuda", 3), "cuda:3"),
    (SI, (SI, 0), f"{SI}:0"),
    (f"{SI}:1", (SI, 1), f"{SI}:1"),
])
def test_parse_device_and_full_names(name, parsed, full):
    assert parse_device(name) == parsed
    assert canonical_device(name) == full


@pytest.mark.parametrize("name, words", [
    ("gpu", ["unknown device 'gpu'", "cpu", "cuda"]),
    ("CUDA", ["unknown device"]),
    ("", ["unknown device"]),
    ("cpu:1", ["'cpu' takes no index"]),
    ("cpu:0", ["'cpu' takes no index"]),
    ("cuda:", ["integer >= 0"]),
    ("cuda:-1", ["integer >= 0"]),
    ("cuda:x", ["integer >= 0"]),
    ("cuda:1:2", ["integer >= 0"]),
    (None, ["string"]),
    (0, ["string"]),
])
def test_bad_device_names_raise_one_clear_line(name, words):
    for call in (parse_device, get_backend):
        with pytest.raises(ValueError) as info:
            call(name)
        message = str(info.value)
        assert "\n" not in message and all(w in message for w in words), message
    with pytest.raises(ValueError):
        Tensor([1.0], device=name)


def test_the_index_is_kept_and_each_device_has_one_backend():
    first, second = get_backend(f"{SI}:0"), get_backend(f"{SI}:1")
    assert get_backend(SI) is first and first is not second
    assert (first.name, first.index, first.device) == (SI, 0, f"{SI}:0")
    assert (second.name, second.index, second.device) == (SI, 1, f"{SI}:1")
    assert get_backend(DEFAULT_DEVICE).device == "cpu"
    x = Tensor([1.0, 2.0], device=f"{SI}:1")
    assert x.device == f"{SI}:1" and Tensor([1.0], device=SI).device == f"{SI}:0"
    assert x.to(f"{SI}:1") is x
    y = x.to(SI)
    assert y.device == f"{SI}:0" and isinstance(y.data, StandinArray)
    with pytest.raises(RuntimeError, match="different devices"):
        x + y  # two devices of one type are two devices


def test_kernel_tables_come_from_the_registry():
    assert DEVICES["cpu"].kernel_package == "tinygrad_lab.kernels"
    assert DEVICES[SI].kernels == {} and DEVICES[SI].kernel("softmax_forward") is None
    with tl.use_kernels():
        assert not get_backend(SI).is_kernel("softmax_forward")  # the stand-in has none
        if "softmax_forward" in DEVICES["cpu"].kernels:  # Numba installed
            assert DEVICES["cpu"].kernel("softmax_forward") is not None
            assert get_backend("cpu").is_kernel("softmax_forward")


def test_register_a_device_type():
    made: list[int] = []

    def make(index: int) -> Backend:
        made.append(index)
        return standin.StandinBackend()

    try:
        register_device(DeviceType("testdev", make, indexed=True))
        with pytest.raises(ValueError, match="already registered"):
            register_device(DeviceType("testdev", make))
        assert Tensor([1.0], device="testdev:2").device == "testdev:2"
        assert get_backend("testdev:2") is get_backend("testdev:2") and made == [2]
        with pytest.raises(ValueError, match="without ':'"):
            register_device(DeviceType("bad:name", make))
    finally:
        unregister_device("testdev")
    with pytest.raises(ValueError, match="unknown device"):
        get_backend("testdev:2")


def test_cuda_without_cupy_or_gpu_fails_in_one_line():
    if cuda_skip_reason() is None:
        pytest.skip("a GPU is present")
    for attempt in (lambda: get_backend("cuda"), lambda: Tensor([1.0]).to("cuda:1"),
                    lambda: nn.Linear(2, 2).to("cuda")):
        with pytest.raises(RuntimeError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message, message
        assert "tinygrad_lab[cuda]" in message or "driver" in message, message
        assert "'cuda:" in message, message  # names the device it was asked for


# --- the stand-in can fail ----------------------------------------------------------------------
class _HostConstant(Function):
    """A deliberately wrong op: adds a constant built with NumPy on the host, not with xp."""

    def forward(self, a):
        return a + np.ones(a.shape, a.dtype)

    def backward(self, g):
        return (g,)


class _Unmoved(nn.Module):
    """A deliberately wrong layer: its table is a plain attribute, which `.to()` leaves behind."""

    def __init__(self) -> None:
        super().__init__()
        self.table = Tensor(np.ones(3))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table


def test_the_standin_catches_a_host_array_in_device_maths():
    x = np.arange(3.0)
    np.testing.assert_array_equal(_HostConstant.apply(Tensor(x)).numpy(), x + 1)  # fine on CPU
    with pytest.raises(HostArrayError, match="host array mixed into standin maths"):
        _HostConstant.apply(Tensor(x, device=SI))
    a = standin.xp.arange(3.0)
    for mixed in (lambda: a * x, lambda: a[np.array([0, 1])], lambda: standin.xp.exp(x),
                  lambda: np.concatenate([a, x]), lambda: a.dot(x)):
        with pytest.raises(HostArrayError):
            mixed()
    assert isinstance(a.sum(), StandinArray) and a.sum().ndim == 0  # 0-d, as on a GPU
    assert float(a * np.float64(2.0) @ standin.xp.ones(3)) == 6.0  # scalars are fine


def test_the_standin_catches_a_module_attribute_left_on_the_host():
    layer = _Unmoved().to(SI)
    with pytest.raises(RuntimeError, match="different devices"):
        layer(Tensor(np.zeros(3), device=SI))


def test_standin_data_moves_by_copy():
    host = np.arange(4.0)
    t = Tensor(host, device=SI)
    host[0] = 99.0
    out = t.numpy()
    assert out[0] == 0.0 and type(out) is np.ndarray
    out[1] = 99.0
    assert t.numpy()[1] == 1.0


# --- buffers ------------------------------------------------------------------------------------
class _WithBuffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.pe = nn.SinusoidalPositionalEncoding(4, max_len=8)


def test_buffers_move_and_non_persistent_ones_are_not_saved():
    model = _WithBuffers()
    assert {"pe.table", "bn.running_mean", "bn.running_var"} == set(dict(model.named_buffers()))
    state = model.state_dict()
    assert "pe.table" not in state and "bn.running_mean" in state
    model.to(f"{SI}:1")
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        assert t.device == f"{SI}:1" and isinstance(t.data, StandinArray), name
    fresh = _WithBuffers()
    fresh.load_state_dict(model.state_dict())  # strict, and complete without the table
    fresh.load_state_dict({**state, "pe.table": np.zeros((8, 4))})  # written while persistent
    np.testing.assert_array_equal(fresh.pe.table.numpy(), 0.0)
    with pytest.raises(KeyError, match="unexpected"):
        fresh.load_state_dict({**state, "nope": np.zeros(1)})


# --- every layer on every device ----------------------------------------------------------------
def _r(*shape: int) -> np.ndarray:
    return np.random.default_rng(sum(shape)).standard_normal(shape)


F64 = {"dtype": np.float64}
LayerCase = tuple[Callable[[], nn.Module], Callable[[], tuple[Any, ...]]]
LAYERS: dict[str, LayerCase] = {
    "Linear": (lambda: nn.Linear(4, 3, **F64), lambda: (_r(2, 4),)),
    "Linear-gelu": (lambda: nn.Linear(4, 3, activation="gelu", **F64), lambda: (_r(5, 4),)),
    "ReLU": (nn.ReLU, lambda: (_r(2, 4),)),
    "GELU": (nn.GELU, lambda: (_r(2, 4),)),
    "Tanh": (nn.Tanh, lambda: (_r(2, 4),)),
    "Sigmoid": (nn.Sigmoid, lambda: (_r(2, 4),)),
    "Softmax": (nn.Softmax, lambda: (_r(2, 4),)),
    "Identity": (nn.Identity, lambda: (_r(2, 4),)),
    "Flatten": (nn.Flatten, lambda: (_r(2, 3, 2),)),
    "Sequential": (lambda: nn.Sequential(nn.Linear(4, 5, **F64), nn.Tanh()), lambda: (_r(2, 4),)),
    "LayerNorm": (lambda: nn.LayerNorm(4, **F64), lambda: (_r(3, 4),)),
    "RMSNorm": (lambda: nn.RMSNorm(4, **F64), lambda: (_r(3, 4),)),
    "SinusoidalPositionalEncoding": (lambda: nn.SinusoidalPositionalEncoding(4, 8, **F64),
                                     lambda: (_r(2, 3, 4), 2)),
    "LearnedPositionalEmbedding": (lambda: nn.LearnedPositionalEmbedding(8, 4, **F64),
                                   lambda: (_r(2, 3, 4), 1)),
    "RotaryEmbedding": (lambda: nn.RotaryEmbedding(4), lambda: (_r(2, 2, 3, 4), [4, 5, 6])),
    "MultiHeadAttention": (lambda: nn.MultiHeadAttention(4, 2, causal=True, **F64),
                           lambda: (_r(2, 3, 4),)),
    "MultiHeadAttention-rope-mask": (lambda: nn.MultiHeadAttention(4, 2, rope=True, **F64),
                                     lambda: (_r(2, 3, 4), np.tril(np.ones((3, 3), bool)))),
    "TransformerBlock": (lambda: nn.TransformerBlock(4, 2, 8, dropout=0.25, causal=True, **F64),
                         lambda: (_r(2, 3, 4),)),
    "Conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1, activation="relu", **F64),
               lambda: (_r(2, 2, 5, 5),)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), lambda: (_r(2, 2, 4, 4),)),
    "AvgPool2d": (lambda: nn.AvgPool2d(3, 2, 1), lambda: (_r(2, 2, 5, 4),)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3, **F64), lambda: (_r(4, 3),)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(2, **F64), lambda: (_r(2, 2, 3, 3),)),
    "Dropout": (lambda: nn.Dropout(0.5), lambda: (_r(4, 5),)),
    "Embedding": (lambda: nn.Embedding(5, 3, **F64), lambda: (np.array([[0, 1, 4], [2, 2, 3]]),)),
    "RNN": (lambda: nn.RNN(3, 4, **F64), lambda: (_r(5, 2, 3), _r(1, 2, 4))),
    "LSTM": (lambda: nn.LSTM(3, 4, num_layers=2, **F64), lambda: (_r(5, 2, 3),)),
    "GRU": (lambda: nn.GRU(3, 4, batch_first=True, bias=False, **F64), lambda: (_r(2, 5, 3),)),
    "Conv1d": (lambda: nn.Conv1d(2, 3, 3, padding=1, **F64), lambda: (_r(2, 2, 6),)),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1,
                                                   output_padding=1, **F64),
                        lambda: (_r(2, 2, 3, 3),)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: (_r(2, 2, 5, 7),)),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), lambda: (_r(2, 2, 5, 4),)),
    "Upsample": (lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                 lambda: (_r(2, 2, 3, 3),)),
    "Upsample-nearest": (lambda: nn.Upsample(size=(5, 4)), lambda: (_r(1, 2, 3, 3),)),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4, **F64), lambda: (_r(2, 4, 3, 3),)),
    "InstanceNorm1d": (lambda: nn.InstanceNorm1d(3, affine=True, track_running_stats=True, **F64),
                       lambda: (_r(2, 3, 5),)),
    "InstanceNorm2d": (lambda: nn.InstanceNorm2d(2, **F64), lambda: (_r(2, 2, 3, 4),)),
    "CosineSimilarity": (lambda: nn.CosineSimilarity(dim=1), lambda: (_r(3, 4), _r(4, 4)[:3])),
    # losses: the targets are host lists or integer arrays (moved by the loss, no gradient)
    "MSELoss": (nn.MSELoss, lambda: (_r(3, 4), _r(3, 5)[:, :4].tolist())),
    "L1Loss": (nn.L1Loss, lambda: (_r(3, 4), _r(3, 5)[:, :4].tolist())),
    "HuberLoss": (lambda: nn.HuberLoss(delta=0.5), lambda: (_r(3, 4), _r(3, 5)[:, :4].tolist())),
    "SmoothL1Loss": (lambda: nn.SmoothL1Loss(beta=0.5),
                     lambda: (_r(3, 4), _r(3, 5)[:, :4].tolist())),
    "BCELoss": (nn.BCELoss, lambda: (1 / (1 + np.exp(-_r(3, 4))),
                                     (_r(3, 5)[:, :4] > 0).astype(float).tolist())),
    "BCEWithLogitsLoss": (lambda: nn.BCEWithLogitsLoss(pos_weight=np.full(4, 2.0)),
                          lambda: (_r(3, 4), (_r(3, 5)[:, :4] > 0).astype(float).tolist())),
    "CrossEntropyLoss": (lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
                         lambda: (_r(3, 5), np.array([0, 4, 2]))),
    "NLLLoss": (nn.NLLLoss, lambda: (_r(3, 5), np.array([1, 1, 3]))),
    "KLDivLoss": (lambda: nn.KLDivLoss(reduction="batchmean"),
                  lambda: (_r(3, 4), np.full((3, 4), 0.25).tolist())),
}


def test_the_layer_table_covers_every_layer():
    layers = {name for name, obj in vars(nn).items()
              if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj is not nn.Module}
    covered = {name.split("-")[0] for name in LAYERS}
    assert layers <= covered, f"add to LAYERS: {sorted(layers - covered)}"


def _forward_backward(name: str, device: str) -> list[np.ndarray]:
    """Output, input gradient, parameter gradients and buffers after one forward/backward (and
    a second forward in eval mode) of LAYERS[name] built from seed 0 and moved to `device`."""
    make, inputs = LAYERS[name]
    tl.manual_seed(0)
    layer = make().to(device)
    args = [Tensor(a, device=device, requires_grad=a.dtype.kind == "f")
            if isinstance(a, np.ndarray) and a.dtype != bool else a for a in inputs()]
    out = layer(*args)
    out = out[0] if isinstance(out, tuple) else out
    seed = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(seed)  # a NumPy gradient: backward moves it
    grads = [a.grad.numpy() for a in args if isinstance(a, Tensor) and a.requires_grad]
    grads += [p.grad.numpy() for p in layer.parameters()]
    layer.eval()
    again = layer(*args)
    again = again[0] if isinstance(again, tuple) else again
    return [out.numpy(), again.numpy(), *grads, *[b.numpy() for _, b in layer.named_buffers()]]


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_on_every_device_matches_the_cpu_reference(name: str, device: DeviceCase):
    with device.host_random():  # dropout: the CPU's masks (a GPU's generator is its own)
        got = _forward_backward(name, device.device)
    with tl.reference():
        want = _forward_backward(name, DEFAULT_DEVICE)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is np.ndarray and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, 0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
    lambda ps: optim.Adam(ps, 0.1, weight_decay=0.01),
    lambda ps: optim.AdamW(ps, 0.1),
    lambda ps: optim.RMSprop(ps, 0.1, momentum=0.5),
    lambda ps: optim.Adagrad(ps, 0.1),
], ids=["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_optimizer_steps_on_every_device_match_the_cpu_reference(make, device: DeviceCase):
    def train(where: str) -> list[np.ndarray]:
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3, **F64), nn.Tanh(), nn.Linear(3, 2, **F64)).to(where)
        opt = make(model.parameters())
        x = Tensor(_r(5, 4), device=where)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(x), np.array([0, 1, 1, 0, 1])).backward()  # host labels
            opt.step()
        return [p.numpy() for p in model.parameters()]

    got = train(device.device)
    with tl.reference():
        want = train(DEFAULT_DEVICE)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_host_arguments_to_the_api_are_moved(device: DeviceCase):
    """NumPy labels, targets, masks, indices, seeds and operands given to device tensors."""
    x = device.tensor(_r(3, 4), requires_grad=True)
    losses = [
        F.cross_entropy(x, np.array([0, 3, 1])),
        F.mse_loss(x, np.ones((3, 4))),
        (x * (x > np.zeros((3, 4)))).sum(),
        tl.where(np.eye(3, 4, dtype=bool), x, x * 2).sum(),
        x[np.array([0, 2])].sum() + x[[1, 1]].sum() + x[Tensor(np.array([2]))].sum(),
        (np.ones((3, 4)) - x).sum(),
        F.embedding(np.array([1, 2]), x).sum(),
        F.scaled_dot_product_attention(x[None], x[None], x[None], np.tril(np.ones((3, 3), bool)),
                                       ).sum(),
    ]
    total = losses[0]
    for loss in losses[1:]:
        total = total + loss
    total.backward()
    assert x.grad.device == x.device and np.all(np.isfinite(x.grad.numpy()))


# --- one training step of every library model -----------------------------------------------------
def _models() -> dict[str, tuple[Callable[[], nn.Module], tuple[Any, ...], Callable[..., Any]]]:
    from tinygrad_lab import models as M

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 7, size=(2, 5))

    def classify(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    def next_token(model, batch):
        out = model(batch[0])
        return F.cross_entropy(out[0] if isinstance(out, tuple) else out, batch[1])

    return {
        "MLP": (lambda: M.MLP(M.MLPConfig(inputs=6, hidden=(5,), classes=3)),
                (rng.random((4, 6), dtype=np.float32), np.array([0, 1, 2, 1])), classify),
        "CNN": (lambda: M.CNN(M.CNNConfig(image=8, channels=(2,), hidden=5, classes=3)),
                (rng.random((2, 1, 8, 8), dtype=np.float32), np.array([0, 2])), classify),
        "GPT": (lambda: M.GPT(M.GPTConfig(vocab_size=7, block_size=4, d_model=8, num_heads=2,
                                          num_layers=1, d_ff=16, dropout=0.1)),
                (tokens[:, :4], tokens[:, 1:]), next_token),
        "CharLSTM": (lambda: M.CharLSTM(M.CharLSTMConfig(vocab_size=7, embed=4, hidden=5)),
                     (tokens.T[:4], tokens.T[1:]), next_token),
    }


def test_the_model_table_covers_every_library_model():
    from tinygrad_lab import models as M

    exported = {name for name in M.__all__
                if isinstance(getattr(M, name), type) and issubclass(getattr(M, name), nn.Module)}
    assert exported == set(_models())


@pytest.mark.parametrize("name", ["MLP", "CNN", "GPT", "CharLSTM"])
def test_one_training_step_of_every_model_matches_the_cpu_reference(name, device: DeviceCase):
    from tinygrad_lab import train

    make, batch, loss_fn = _models()[name]

    def step(where: str) -> list[np.ndarray]:
        tl.manual_seed(0)
        model = make().to(where)
        opt = optim.SGD(model.parameters(), 0.1, momentum=0.9)  # Adam would amplify rounding
        out = train.train_step(model, train.to_device(batch, where), loss_fn, opt, clip=1.0)
        return [out.loss.numpy(), *[p.numpy() for p in model.parameters()]]

    with device.host_random():  # dropout: the CPU's masks (a GPU's generator is its own)
        got = step(device.device)
    with tl.reference():
        want = step(DEFAULT_DEVICE)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)  # float32 models
