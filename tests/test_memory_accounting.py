"""tl.memory: live/peak bytes by category, per op and module; estimate() against measurement;
saved-for-backward bytes against PyTorch's."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import function, helpers, memory, optim
from tinygrad_lab.models import CNN, GPT, MLP, CNNConfig, GPTConfig, MLPConfig
from tinygrad_lab.nn import functional as F
from tinygrad_lab.train import train_step


@pytest.fixture(autouse=True)
def _accounting_off():
    """Off before and after; other tests' garbage collected, since the accounting counts every
    live tensor and the figures below are exact."""
    memory.disable()
    gc.collect()
    yield
    memory.disable()
    assert function._memory is None


def _loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _workload(family: str, size: int, batch: int):
    """(model, optimizer, batch of Tensors, one sample's input shape and dtype)."""
    tl.manual_seed(0)
    rng = np.random.default_rng(0)
    if family == "mlp":
        model = MLP(MLPConfig(inputs=64, hidden=(size,) * 2, classes=10))
        x, y = rng.standard_normal((batch, 64), dtype=np.float32), rng.integers(0, 10, batch)
    elif family == "cnn":
        model = CNN(CNNConfig(image=12, channels=(size, 2 * size), hidden=16, dropout=0.0))
        x = rng.standard_normal((batch, 1, 12, 12), dtype=np.float32)
        y = rng.integers(0, 10, batch)
    else:
        model = GPT(GPTConfig(vocab_size=17, block_size=8, d_model=size, num_heads=2,
                              num_layers=2, d_ff=2 * size))
        x, y = rng.integers(0, 17, (batch, 8)), rng.integers(0, 17, (batch, 8))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    return model, opt, (tl.Tensor(x), tl.Tensor(y)), x.shape[1:], x.dtype


def test_accounting_is_off_by_default_and_costs_one_check() -> None:
    assert function._memory is None and not memory.is_enabled()
    with memory.track():
        assert memory.is_enabled()
    assert function._memory is None


def test_categories_of_a_training_step() -> None:
    model, opt, batch, _, _ = _workload("mlp", 32, 8)
    train_step(model, batch, _loss, opt)
    params = sum(p.nbytes for p in model.parameters())
    memory.reset_peak()
    train_step(model, batch, _loss, opt)
    stats = memory.stats()
    assert set(stats) == {*memory.CATEGORIES, "total"}
    assert stats["parameters"]["live"] == params
    assert stats["gradients"]["live"] == params  # .grad of every parameter, after the step
    assert stats["optimizer_state"]["live"] == 2 * params  # Adam: m and v
    assert stats["activations"]["live"] == 0  # backward released every saved array
    assert stats["activations"]["peak"] > 0
    assert memory.peak() == stats["total"]["peak"] >= memory.live()
    assert memory.peak(category="activations") == stats["activations"]["peak"]
    assert memory.peak("cpu") == memory.peak()  # one device here
    assert sum(stats[c]["at_peak"] for c in memory.CATEGORIES) == memory.peak()


def test_every_device_is_accounted_under_its_name(device) -> None:
    """The stand-in device's arrays are views of plain ndarrays (their base): still one buffer
    each; figures are keyed by the full device name; estimate() matches on that device."""
    model, _, (x, y), shape, dtype = _workload("gpt", 16, 4)
    model.to(device.device)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    batch = (x.to(device.device), y.to(device.device))
    train_step(model, batch, _loss, opt)
    memory.reset_peak()
    train_step(model, batch, _loss, opt)
    params = sum(p.nbytes for p in model.parameters())
    name = model.parameters()[0].device
    assert memory.live(name, "parameters") == params
    assert memory.live(name, "optimizer_state") == 2 * params
    est = memory.estimate(model, shape, opt, batch_size=4, dtype=dtype)
    assert abs(est.total - memory.peak(name)) <= 0.10 * memory.peak(name)


def test_live_bytes_fall_when_arrays_are_freed() -> None:
    with memory.track() as tracker:
        before = tracker.live()
        x = tl.Tensor(np.ones((64, 64), np.float32), requires_grad=True)
        y = x.tanh()  # tanh saves its output: activations
        assert tracker.live("cpu", "activations") == 64 * 64 * 4
        assert tracker.live() == before + 2 * 64 * 64 * 4
        del y
        assert tracker.live("cpu", "activations") == 0
        del x
        assert tracker.live() == before
        assert tracker.peak() == before + 2 * 64 * 64 * 4


def test_an_unwalked_graph_releases_what_it_saved() -> None:
    """log saves its input; when the graph is dropped without backward, the input (still held)
    is a temporary again, not an activation."""
    with memory.track() as tracker:
        x = tl.Tensor(np.ones((32, 32), np.float32), requires_grad=True)
        y = x.log()
        assert tracker.live(category="activations") == 32 * 32 * 4
        del y
        assert tracker.live(category="activations") == 0
        assert tracker.live(category="temporaries") == 32 * 32 * 4  # x itself


def test_saved_views_count_their_buffer_once() -> None:
    """Linear saves a reshaped view of its input and the fused ReLU's output; the next Linear
    saves that same output again: one buffer each."""
    model, _, _, _, _ = _workload("mlp", 32, 4)
    with memory.track() as tracker:
        model(tl.Tensor(np.ones((4, 64), np.float32))).sum().backward()
        ops = tracker.by_op()
    # layer 0: its input (4, 64) and its output (4, 32); layer 1: its output (4, 32);
    # layer 2: nothing new (no activation, its input is layer 1's output)
    assert ops["Linear"] == (4 * 64 + 2 * 4 * 32) * 4
    modules = tracker.by_module()
    assert modules["MLP.layers.0"] == (4 * 64 + 4 * 32) * 4
    assert modules["MLP.layers.1"] == 4 * 32 * 4


def test_optimizer_state_and_gradients_found_when_accounting_starts() -> None:
    model, opt, batch, _, _ = _workload("mlp", 16, 4)
    train_step(model, batch, _loss, opt)
    params = sum(p.nbytes for p in model.parameters())
    memory.enable()
    assert memory.live(category="optimizer_state") == 2 * params
    assert memory.live(category="gradients") == params
    assert memory.live(category="parameters") == params


def test_live_tensor_bytes_counts_optimizer_state() -> None:
    model, opt, batch, _, _ = _workload("mlp", 16, 4)
    train_step(model, batch, _loss, opt)
    params = sum(p.nbytes for p in model.parameters())
    held = sum(t.nbytes for t in batch)
    assert helpers.live_tensor_bytes() >= 4 * params + held  # params, grads, Adam's m and v


def test_workspace_is_counted_while_it_lives() -> None:
    """Conv2d's im2col columns and the attention's recomputed weights are declared scratch."""
    x = tl.Tensor(np.ones((2, 3, 8, 8), np.float32))
    w = tl.Tensor(np.ones((4, 3, 3, 3), np.float32), requires_grad=True)
    with memory.track() as tracker:
        F.conv2d(x, w).sum().backward()
        cols = 3 * 9 * 2 * 36 * 4
        assert tracker.peak(category="temporaries") >= cols


@pytest.mark.parametrize("family,sizes", [("mlp", (16, 64)), ("cnn", (2, 6)), ("gpt", (16, 32))])
def test_estimate_within_10_percent_of_measured_peak(family: str, sizes: tuple[int, ...]) -> None:
    for size in sizes:
        model, opt, batch, shape, dtype = _workload(family, size, 12)
        train_step(model, batch, _loss, opt)
        memory.reset_peak()
        train_step(model, batch, _loss, opt)  # steady state: Adam's state and grads exist
        stats = memory.stats()
        memory.disable()
        est = memory.estimate(model, shape, opt, batch_size=12, dtype=dtype)
        measured = stats["total"]["peak"]
        assert abs(est.total - measured) <= 0.10 * measured, (family, size, est, stats)
        for c in ("parameters", "gradients", "optimizer_state"):
            assert est.bytes[c] == stats[c]["peak"], (c, est.bytes, stats)
        assert abs(est.bytes["activations"] - stats["activations"]["peak"]) <= (
            0.10 * stats["activations"]["peak"])


@pytest.mark.parametrize("family", ["mlp", "cnn", "gpt"])
def test_saved_activations_are_affine_in_batch(family: str) -> None:
    """What estimate() relies on: bytes saved for backward grow linearly with the batch."""
    saved = []
    for batch in (2, 4, 8):
        model, _, (x, y), _, _ = _workload(family, 8, batch)
        with memory.track() as tracker:
            loss = F.cross_entropy(model(x), y)  # its graph holds what was saved
            saved.append(tracker.live(category="activations"))
            del loss
    assert saved[2] - saved[1] == 2 * (saved[1] - saved[0]) > 0


def test_estimate_leaves_the_model_untouched_and_names_optimizers() -> None:
    model, opt, batch, shape, dtype = _workload("mlp", 16, 4)
    train_step(model, batch, _loss, opt)
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    state = tl.random.generator().bit_generator.state
    params = sum(p.nbytes for p in model.parameters())
    assert memory.estimate(model, shape, "adamw", 4, dtype).bytes["optimizer_state"] == 2 * params
    assert memory.estimate(model, shape, "sgd", 4, dtype).bytes["optimizer_state"] == 0
    sgd = optim.SGD(model.parameters(), momentum=0.9)
    assert memory.estimate(model, shape, sgd, 4, dtype).bytes["optimizer_state"] == params
    assert memory.estimate(model, shape, None, 4, dtype).total > 0
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)
    assert tl.random.generator().bit_generator.state == state
    assert function._memory is None


def test_report_prints_predicted_measured_and_unexplained(capsys) -> None:
    model, opt, batch, shape, dtype = _workload("gpt", 16, 4)
    train_step(model, batch, _loss, opt)
    memory.reset_peak()
    train_step(model, batch, _loss, opt)
    est = memory.estimate(model, shape, opt, batch_size=4, dtype=dtype)
    text = memory.report(est, device="cpu")
    assert text in capsys.readouterr().out
    for word in (*memory.CATEGORIES, "predicted", "measured peak", "unexplained"):
        assert word in text
    assert "QKVAttention" in text


# --- against PyTorch: bytes saved for backward per sample -----------------------------------------
def _torch_saved_per_sample(build, make_batch) -> float:
    """Bytes PyTorch's autograd saves (saved_tensors_hooks; each storage once, parameters out),
    per sample: the difference between batches of 2 and 4."""
    import torch

    model = build()
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
    totals = []
    for batch in (2, 4):
        storages: dict[int, int] = {}

        def pack(t, storages=storages):
            s = t.untyped_storage()
            if s.data_ptr() not in exclude:
                storages[s.data_ptr()] = s.nbytes()
            return t

        x, y = make_batch(batch)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
            torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        totals.append(sum(storages.values()))
    return (totals[1] - totals[0]) / 2


def _torch_gpt(c: GPTConfig):
    import torch
    from torch import nn
    from torch.nn import functional as TF

    class Block(nn.Module):  # nanoGPT's, as benchmarks/gpt_workload.py writes it
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
            self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
            self.proj = nn.Linear(c.d_model, c.d_model)
            self.mlp = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(approximate="tanh"),
                                     nn.Linear(c.d_ff, c.d_model))

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (a.view(b, t, c.num_heads, -1).transpose(1, 2) for a in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, d))
            return x + self.mlp(self.ln2(x))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(c.vocab_size, c.d_model)
            self.wpe = nn.Embedding(c.block_size, c.d_model)
            self.blocks = nn.Sequential(*[Block() for _ in range(c.num_layers)])
            self.ln_f = nn.LayerNorm(c.d_model)
            self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            return self.head(self.ln_f(self.blocks(x)))

    return Model()


@pytest.mark.parametrize("config", [
    GPTConfig(vocab_size=65, block_size=64, d_model=128, num_heads=4, num_layers=2, d_ff=512),
    GPTConfig(vocab_size=65, block_size=16, d_model=32, num_heads=1, num_layers=2, d_ff=128),
    GPTConfig(vocab_size=65, block_size=128, d_model=64, num_heads=2, num_layers=1, d_ff=256),
])
def test_gpt_saves_no_more_than_pytorch_per_sample(config: GPTConfig) -> None:
    torch = pytest.importorskip("torch")
    t = config.block_size
    theirs = _torch_saved_per_sample(
        lambda: _torch_gpt(config),
        lambda b: (torch.zeros(b, t, dtype=torch.long), torch.zeros(b, t, dtype=torch.long)))
    ours = memory.estimate(GPT(config), (t,), None, 4, np.int64).saved_per_sample
    assert 0 < ours <= theirs, (ours, theirs)


@pytest.mark.parametrize("hidden", [(64,), (512,), (256, 256, 256)])
def test_mlp_saves_no_more_than_pytorch_per_sample(hidden: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    def build():
        layers: list = []
        for a, b in zip((784, *hidden), hidden):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(hidden[-1], 10))

    theirs = _torch_saved_per_sample(
        build, lambda b: (torch.zeros(b, 784), torch.zeros(b, dtype=torch.long)))
    ours = memory.estimate(MLP(MLPConfig(hidden=hidden)), (784,), None, 4).saved_per_sample
    assert 0 < ours <= theirs, (ours, theirs)
