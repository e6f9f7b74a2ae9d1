"""Recurrent layers (RNN, LSTM, GRU) and the split op they run on (unbind, chunk).

- forward equals a direct NumPy loop over the cell formulas, for every layout option;
- float64 gradcheck on hypothesis sizes, gradients wrt the input, h0 (and c0) and a parameter;
- forward and every gradient equal torch.nn.RNN/LSTM/GRU given the same weights (when torch is
  importable);
- a tiny LSTM overfits a short sequence; the shakespeare-lstm recipe trains, saves a checkpoint,
  and `python -m tinygrad_lab sample` prints text from its vocabulary.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import Tensor, nn, optim
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import gradcheck
from tinygrad_lab.testing import strategies as tst
from tinygrad_lab.testing.devices import CPU_CASES

KINDS = ["RNN", "LSTM", "GRU"]


def make(kind: str, input_size: int, hidden: int, layers: int = 1, bias: bool = True,
         batch_first: bool = False, seed: int = 0) -> nn.RNNBase:
    tl.manual_seed(seed)
    return getattr(nn, kind)(input_size, hidden, num_layers=layers, bias=bias,
                             batch_first=batch_first, dtype=np.float64)


def n_states(kind: str) -> int:
    return 2 if kind == "LSTM" else 1


def split_state(kind: str, state):
    """Our layer's final state as a tuple: (h_n,) or (h_n, c_n)."""
    return tuple(state) if kind == "LSTM" else (state,)


def join_state(kind: str, tensors):
    """A tuple of initial-state tensors as the layer takes it: h0, or (h0, c0)."""
    if not tensors:
        return None
    return tuple(tensors) if kind == "LSTM" else tensors[0]


# --- a NumPy reference: the cell formulas, one step at a time --------------------------------
def np_sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def np_recurrent(kind: str, params: dict[str, np.ndarray], x: np.ndarray, h0: np.ndarray,
                 c0: np.ndarray, layers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (T, B, I), h0 and c0 (L, B, H), params in our (in, out) layout -> out, h_n, c_n."""
    finals_h, finals_c = [], []
    for k in range(layers):
        w_ih, w_hh = params[f"weight_ih_l{k}"], params[f"weight_hh_l{k}"]
        b_ih, b_hh = params.get(f"bias_ih_l{k}", 0.0), params.get(f"bias_hh_l{k}", 0.0)
        h, c, outputs = h0[k], c0[k], []
        for x_t in x:
            gx, gh = x_t @ w_ih + b_ih, h @ w_hh + b_hh
            if kind == "RNN":
                h = np.tanh(gx + gh)
            elif kind == "LSTM":
                i, f, g, o = np.split(gx + gh, 4, axis=-1)
                c = np_sigmoid(f) * c + np_sigmoid(i) * np.tanh(g)
                h = np_sigmoid(o) * np.tanh(c)
            else:
                (x_r, x_z, x_n), (h_r, h_z, h_n) = np.split(gx, 3, -1), np.split(gh, 3, -1)
                r, z = np_sigmoid(x_r + h_r), np_sigmoid(x_z + h_z)
                n = np.tanh(x_n + r * h_n)
                h = (1 - z) * n + z * h
            outputs.append(h)
        x = np.stack(outputs)
        finals_h.append(h)
        finals_c.append(c)
    return x, np.stack(finals_h), np.stack(finals_c)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_a_numpy_loop(kind, layers, batch_first, with_state, bias):
    T, B, I, H = 4, 3, 5, 6
    layer = make(kind, I, H, layers, bias, batch_first)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    h0, c0 = (rng.standard_normal((layers, B, H)) if with_state else np.zeros((layers, B, H))
              for _ in range(2))
    states = [Tensor(h0), Tensor(c0)][: n_states(kind)] if with_state else []
    out, state = layer(Tensor(x.transpose(1, 0, 2) if batch_first else x),
                       join_state(kind, states))
    params = {name: p.numpy() for name, p in layer.named_parameters()}
    want_out, want_h, want_c = np_recurrent(kind, params, x, h0, c0, layers)
    got_out = out.numpy().transpose(1, 0, 2) if batch_first else out.numpy()
    np.testing.assert_allclose(got_out, want_out, rtol=1e-12, atol=1e-12)
    got = split_state(kind, state)
    np.testing.assert_allclose(got[0].numpy(), want_h, rtol=1e-12, atol=1e-12)
    if kind == "LSTM":
        np.testing.assert_allclose(got[1].numpy(), want_c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_batched_batch_first_and_unbatched(kind):
    layer = nn.LSTM(3, 4, 2) if kind == "LSTM" else getattr(nn, kind)(3, 4, 2)
    x = Tensor(np.ones((5, 2, 3), np.float32))
    out, state = layer(x)
    assert out.shape == (5, 2, 4) and out.dtype == np.float32
    assert all(s.shape == (2, 2, 4) for s in split_state(kind, state))
    out1, state1 = layer(Tensor(np.ones((5, 3), np.float32)))  # unbatched (T, I)
    assert out1.shape == (5, 4) and all(s.shape == (2, 4) for s in split_state(kind, state1))
    np.testing.assert_allclose(out1.numpy(), out.numpy()[:, 0], rtol=1e-5, atol=1e-6)
    bf = getattr(nn, kind)(3, 4, 2, batch_first=True)
    bf.load_state_dict(layer.state_dict())
    out_bf, _ = bf(Tensor(np.ones((2, 5, 3), np.float32)))  # (B, T, I)
    assert out_bf.shape == (2, 5, 4)
    np.testing.assert_allclose(out_bf.numpy().transpose(1, 0, 2), out.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_running_in_two_halves_with_the_state_equals_one_run(kind):
    layer = make(kind, 3, 5, layers=2)
    x = np.random.default_rng(2).standard_normal((6, 2, 3))
    out, state = layer(Tensor(x))
    first, mid = layer(Tensor(x[:4]))
    second, end = layer(Tensor(x[4:]), mid)
    np.testing.assert_allclose(np.concatenate([first.numpy(), second.numpy()]), out.numpy(),
                               rtol=1e-12, atol=1e-12)
    for a, b in zip(split_state(kind, end), split_state(kind, state)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_init_is_uniform_within_one_over_sqrt_hidden_and_seeded(kind):
    a, b = make(kind, 7, 16, layers=2, seed=5), make(kind, 7, 16, layers=2, seed=5)
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[kind]
    shapes = {"weight_ih_l0": (7, gates * 16), "weight_hh_l0": (16, gates * 16),
              "bias_ih_l0": (gates * 16,), "bias_hh_l0": (gates * 16,),
              "weight_ih_l1": (16, gates * 16), "weight_hh_l1": (16, gates * 16),
              "bias_ih_l1": (gates * 16,), "bias_hh_l1": (gates * 16,)}
    params = dict(a.named_parameters())
    assert {name: p.shape for name, p in params.items()} == shapes
    for name, p in params.items():
        values = p.numpy()
        assert 0.15 < np.abs(values).max() <= 0.25, name
        np.testing.assert_array_equal(values, dict(b.named_parameters())[name].numpy())
    assert not any(n.startswith("bias") for n, _ in make(kind, 2, 3, bias=False)
                   .named_parameters())


def test_bad_inputs_and_states_are_named():
    lstm = nn.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM: expected input \(T, B, 3\)"):
        lstm(Tensor(np.ones((5, 2, 4))))
    h0 = Tensor(np.zeros((1, 2, 4)))
    with pytest.raises(TypeError, match="h0 and c0"):
        lstm(Tensor(np.ones((5, 2, 3))), h0)
    with pytest.raises(ValueError, match=r"h0 has shape \(1, 2, 4\), expected \(2, 2, 4\)"):
        lstm(Tensor(np.ones((5, 2, 3))), (h0, h0))
    with pytest.raises(ValueError, match="no time steps"):
        nn.GRU(3, 4)(Tensor(np.ones((0, 2, 3))))
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        nn.RNN(3, 0)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="gelu")


def test_rnn_relu_nonlinearity():
    layer = nn.RNN(2, 3, nonlinearity="relu", dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 1, 2))
    out, _ = layer(Tensor(x))
    p = {n: v.numpy() for n, v in layer.named_parameters()}
    h = np.zeros((1, 3))
    for x_t in x:
        h = np.maximum(x_t @ p["weight_ih_l0"] + p["bias_ih_l0"] + h @ p["weight_hh_l0"]
                       + p["bias_hh_l0"], 0)
    np.testing.assert_allclose(out.numpy()[-1], h, rtol=1e-12)


# --- gradients ---------------------------------------------------------------------------------
@st.composite
def recurrent_cases(draw: st.DrawFn):
    kind = draw(st.sampled_from(KINDS))
    layers = draw(st.integers(1, 2))
    T, B, I, H = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2)), \
        draw(st.integers(1, 2))
    batch_first, with_state = draw(st.booleans()), draw(st.booleans())
    param = draw(st.sampled_from(
        [f"weight_ih_l{layers - 1}", "weight_hh_l0", f"bias_hh_l{layers - 1}", "bias_ih_l0"]))
    x = draw(tst.arrays((B, T, I) if batch_first else (T, B, I), low=-2, high=2))
    states = [draw(tst.arrays((layers, B, H), low=-1, high=1))
              for _ in range(n_states(kind) if with_state else 0)]
    return kind, layers, H, batch_first, param, x, states


@given(case=recurrent_cases())
def test_gradcheck_input_state_and_a_parameter(case):
    kind, layers, H, batch_first, param, x, states = case
    layer = make(kind, x.shape[-1], H, layers, batch_first=batch_first)
    w = getattr(layer, param).numpy()

    def fn(x, w, *states):
        setattr(layer, param, w)
        out, final = layer(x, join_state(kind, list(states)))
        return tl.cat([out.reshape(-1)] + [s.reshape(-1) for s in split_state(kind, final)])

    assert gradcheck(fn, x, w, *states)


TORCH_CASES = [(kind, layers, batch_first, with_state, bias)
               for kind in KINDS for layers in (1, 2) for batch_first in (False, True)
               for with_state in (False, True) for bias in (True, False)]


@pytest.mark.parametrize("kind,layers,batch_first,with_state,bias", TORCH_CASES)
def test_forward_and_gradients_match_torch(kind, layers, batch_first, with_state, bias):
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 3, 4, 6
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(I, H, num_layers=layers, bias=bias,
                                     batch_first=batch_first).double()
    ours = make(kind, I, H, layers, bias, batch_first)
    for name, p in theirs.named_parameters():  # torch's weights are (out, in): transpose
        value = p.detach().numpy()
        getattr(ours, name).data[...] = value.T if name.startswith("weight") else value
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    states = [rng.standard_normal((layers, B, H)) for _ in range(n_states(kind))]
    g_out = rng.standard_normal((B, T, H) if batch_first else (T, B, H))
    g_states = [rng.standard_normal((layers, B, H)) for _ in range(n_states(kind))]

    x_t = torch.tensor(x, requires_grad=True)
    s_t = [torch.tensor(s, requires_grad=True) for s in states] if with_state else []
    out_t, final_t = theirs(x_t, join_state(kind, s_t))
    loss_t = (out_t * torch.from_numpy(g_out)).sum() + sum(
        (f * torch.from_numpy(g)).sum() for f, g in zip(split_state(kind, final_t), g_states))
    loss_t.backward()

    x_o = Tensor(x, requires_grad=True)
    s_o = [Tensor(s, requires_grad=True) for s in states] if with_state else []
    out_o, final_o = ours(x_o, join_state(kind, s_o))
    loss_o = (out_o * g_out).sum()
    for f, g in zip(split_state(kind, final_o), g_states):
        loss_o = loss_o + (f * g).sum()
    loss_o.backward()

    close = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(out_o.numpy(), out_t.detach().numpy(), **close)
    for f_o, f_t in zip(split_state(kind, final_o), split_state(kind, final_t)):
        np.testing.assert_allclose(f_o.numpy(), f_t.detach().numpy(), **close)
    np.testing.assert_allclose(x_o.grad.numpy(), x_t.grad.numpy(), **close)
    for a, b in zip(s_o, s_t):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **close)
    for name, p in theirs.named_parameters():
        want = p.grad.numpy().T if name.startswith("weight") else p.grad.numpy()
        np.testing.assert_allclose(getattr(ours, name).grad.numpy(), want, err_msg=name, **close)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_kernels_match_the_reference_path(kind):
    tl.manual_seed(0)
    layer = getattr(nn, kind)(8, 16, num_layers=2)
    x = np.random.default_rng(4).standard_normal((6, 4, 8)).astype(np.float32)
    results = {}
    for case in CPU_CASES:
        layer.zero_grad()
        xt = Tensor(x, requires_grad=True)
        with case.active():
            out, _ = layer(xt)
            (out * out).sum().backward()
        assert out.dtype == np.float32 and xt.grad.dtype == np.float32
        results[case.name] = [out.numpy(), xt.grad.numpy()] + [p.grad.numpy()
                                                               for p in layer.parameters()]
    for a, b in zip(results["cpu-reference"], results["cpu-kernels"]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


# --- the split op ------------------------------------------------------------------------------
@given(x=tst.shapes(min_dims=1, max_dims=3).flatmap(tst.arrays), data=st.data())
def test_unbind_and_chunk_values_and_gradcheck(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    chunks = data.draw(st.integers(1, 4))
    pieces = Tensor(x).chunk(chunks, axis)
    np.testing.assert_array_equal(
        np.concatenate([p.numpy() for p in pieces], axis=axis), x)
    slices = Tensor(x).unbind(axis)
    assert len(slices) == x.shape[axis]
    np.testing.assert_array_equal(np.stack([s.numpy() for s in slices], axis=axis), x)
    weights = [float(i + 1) for i in range(x.shape[axis])]
    assert gradcheck(lambda a: tl.stack([s * w for s, w in zip(a.unbind(axis), weights)], axis),
                     x)
    assert gradcheck(lambda a: tl.cat([p.tanh() * (i + 1) for i, p in
                                       enumerate(a.chunk(chunks, axis))], axis), x)


def test_chunk_sizes_follow_torch():
    x = Tensor(np.arange(10.0))
    assert [p.shape[0] for p in x.chunk(3)] == [4, 4, 2]
    assert [p.shape[0] for p in x.chunk(4)] == [3, 3, 3, 1]
    assert [p.shape[0] for p in x.chunk(6)] == [2, 2, 2, 2, 2]  # torch gives 5 chunks too
    with pytest.raises(ValueError, match="chunks must be >= 1"):
        x.chunk(0)
    with pytest.raises(ValueError, match="axis 1 is out of range"):
        x.unbind(1)


def test_unused_parts_get_zero_gradient_and_graphs_can_be_walked_twice():
    x = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    a, _, c = x.unbind(0)
    loss = (a * 2 + c * c).sum()
    loss.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 2], [0, 0], [8, 10]])
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[4, 4], [0, 0], [16, 20]])
    with tl.no_grad():
        parts = x.unbind(0)
    assert not any(p.requires_grad for p in parts)


# --- end to end ----------------------------------------------------------------------------------
def test_tiny_lstm_overfits_a_short_sequence(cpu_path):
    tl.manual_seed(0)
    text = "the cat sat on the mat. "
    chars = sorted(set(text))
    ids = np.array([chars.index(ch) for ch in text])
    x, y = ids[:-1, None], ids[1:, None]  # (T, 1) inputs and next-character targets
    embed, lstm, head = nn.Embedding(len(chars), 8), nn.LSTM(8, 32), nn.Linear(32, len(chars))
    params = embed.parameters() + lstm.parameters() + head.parameters()
    opt = optim.Adam(params, lr=2e-2)
    losses = []
    for _ in range(50):
        h, _ = lstm(embed(x))
        loss = F.cross_entropy(head(h), y)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(params, 5.0)
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.05, (losses[0], losses[-1])  # from ~2.4 (log of 11 characters)


def test_recipe_trains_saves_and_the_cli_samples(tmp_path, capsys):
    from tinygrad_lab import cli

    ckpt = tmp_path / "lstm.npz"
    status = cli.main(["train", "shakespeare-lstm", "--epochs", "1", "--steps-per-epoch", "5",
                       "--batch-size", "4", "--seq-len", "16", "--embed", "8", "--hidden", "16",
                       "--eval-batches", "1", "--sample-length", "20", "--save", str(ckpt)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "epoch 1/1 - train loss" in printed and "nats/char" in printed
    state, meta = tl.serialization.load_checkpoint(ckpt)
    assert np.isfinite(meta["val_loss"])

    env = dict(os.environ, TINYGRAD_LAB_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "tinygrad_lab", "sample", str(ckpt),
                           "--length", "50"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("\n") and proc.stdout.endswith("\n")  # prompt, print's newline
    generated = proc.stdout[1:-1]
    vocab = set(tl.datasets.load_shakespeare())
    assert len(generated) == 50 and set(generated) <= vocab

    again = ["sample", str(ckpt), "--length", "30", "--prompt", "ROMEO:", "--temperature",
             "0.5", "--top-k", "3", "--seed", "7"]
    assert cli.main(again) == 0
    text = capsys.readouterr().out[:-1]
    assert text.startswith("ROMEO:") and len(text) == 36
    assert cli.main(again) == 0 and capsys.readouterr().out[:-1] == text  # seeded

    assert cli.main(["sample", str(ckpt), "--prompt", "\u00e9"]) == 1
    assert "not in the vocabulary" in capsys.readouterr().err
