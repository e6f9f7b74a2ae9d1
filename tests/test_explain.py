"""Interpretability: module hooks, attention weights, attributions (saliency, gradient x input,
integrated gradients with completeness, occlusion), the `explain` command's pictures, and the
tape as Graphviz DOT."""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib import image as mpimg

import tinygrad_lab as tl
from tinygrad_lab import cli, datasets, explain, nn, viz
from tinygrad_lab.models.cnn import CNN, CNNConfig
from tinygrad_lab.models.gpt import GPT, GPTConfig
from tinygrad_lab.nn import functional as F
from tinygrad_lab.serialization import save_checkpoint


# --- hooks ----------------------------------------------------------------------------------------
def _torch_linear(ours: nn.Linear) -> torch.nn.Linear:
    t = torch.nn.Linear(*ours.weight.shape).double()
    with torch.no_grad():
        t.weight.copy_(torch.tensor(ours.weight.numpy().T))
        t.bias.copy_(torch.tensor(ours.bias.numpy()))
    return t


def test_full_backward_hook_sees_what_torch_sees() -> None:
    layer = nn.Linear(3, 2, dtype=np.float64)
    ours, theirs = {}, {}
    layer.register_full_backward_hook(
        lambda m, gi, go: ours.update(gi=gi[0].copy(), go=go[0].copy()))
    t_layer = _torch_linear(layer)
    t_layer.register_full_backward_hook(
        lambda m, gi, go: theirs.update(gi=gi[0].numpy().copy(), go=go[0].numpy().copy()))
    x = np.random.default_rng(0).standard_normal((4, 3))
    y = layer(tl.Tensor(x, requires_grad=True))
    (y * y).sum().backward()
    ty = t_layer(torch.tensor(x, requires_grad=True))
    (ty * ty).sum().backward()
    np.testing.assert_allclose(ours["gi"], theirs["gi"], rtol=1e-12)
    np.testing.assert_allclose(ours["go"], theirs["go"], rtol=1e-12)


def test_backward_hook_can_replace_the_input_gradient_and_is_removable() -> None:
    layer = nn.Linear(3, 2)
    handle = layer.register_full_backward_hook(lambda m, gi, go: (gi[0] * 0,))
    x = tl.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    layer(x).sum().backward()
    assert np.all(x.grad.numpy() == 0) and layer.weight.grad is not None
    handle.remove()
    x.grad = None
    layer(x).sum().backward()
    assert np.any(x.grad.numpy() != 0)


def test_backward_hook_reports_none_for_inputs_without_gradient() -> None:
    class Two(nn.Module):
        def forward(self, a: tl.Tensor, b: tl.Tensor) -> tl.Tensor:
            return a * b

    seen: list = []
    m = Two()
    m.register_full_backward_hook(lambda mod, gi, go: seen.append(gi))
    a = tl.Tensor(np.full(3, 2.0), requires_grad=True)
    b = tl.Tensor(np.full(3, 5.0))  # no gradient wanted
    m(a, b).sum().backward()
    (grad_a, grad_b), = seen
    np.testing.assert_array_equal(grad_a, [5.0, 5.0, 5.0])
    assert grad_b is None
    np.testing.assert_array_equal(a.grad.numpy(), [5.0, 5.0, 5.0])


def test_forward_hooks_see_and_replace() -> None:
    layer = nn.Linear(2, 2)
    calls: list[str] = []
    pre = layer.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    post = layer.register_forward_hook(lambda m, args, out: calls.append("post") or out + 1)
    out = layer(tl.Tensor(np.ones((1, 2), np.float32)))
    np.testing.assert_allclose(out.numpy(), layer.bias.numpy()[None] + 1)
    assert calls == ["post"]
    pre.remove()
    post.remove()
    with pytest.raises(TypeError, match="callable"):
        layer.register_forward_hook("not a function")


# --- attention weights ----------------------------------------------------------------------------
def test_attention_weights_match_torch_multihead_attention() -> None:
    c, h = 8, 2
    ours = nn.MultiHeadAttention(c, h, dtype=np.float64)
    theirs = torch.nn.MultiheadAttention(c, h, batch_first=True).double()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.tensor(ours.qkv.weight.numpy().T))
        theirs.in_proj_bias.copy_(torch.tensor(ours.qkv.bias.numpy()))
        theirs.out_proj.weight.copy_(torch.tensor(ours.proj.weight.numpy().T))
        theirs.out_proj.bias.copy_(torch.tensor(ours.proj.bias.numpy()))
    x = np.random.default_rng(1).standard_normal((2, 5, c))
    causal = np.triu(np.ones((5, 5), bool), 1)  # torch: True = hidden
    y, w = ours(tl.Tensor(x), causal=True, need_weights=True)
    ty, tw = theirs(*[torch.tensor(x)] * 3, attn_mask=torch.tensor(causal),
                    average_attn_weights=False)
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert not w.requires_grad


def test_attention_maps_of_every_gpt_block() -> None:
    tl.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, d_model=16, num_heads=4, num_layers=3,
                          d_ff=32))
    ids = np.random.default_rng(0).integers(0, 11, (2, 6))
    maps = explain.attention_maps(model, ids)
    assert len(maps) == 3 and all(m.shape == (2, 4, 6, 6) for m in maps)
    for m in maps:
        np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-5)
        assert np.all(np.triu(m, 1) == 0)  # causal: no query sees a later key
    assert model.training  # mode restored, hooks gone
    assert all(not m.__dict__.get("_forward_hooks") for m in model.modules())
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        explain.attention_maps(nn.Linear(2, 2), np.ones((1, 2), np.float32))


# --- attributions ---------------------------------------------------------------------------------
def _linear_model(rng: np.random.Generator) -> nn.Linear:
    layer = nn.Linear(5, 3, dtype=np.float64)
    layer.weight.data[...] = rng.standard_normal((5, 3))
    layer.bias.data[...] = rng.standard_normal(3)
    return layer


def test_attributions_of_a_linear_model_are_exact() -> None:
    rng = np.random.default_rng(0)
    model = _linear_model(rng)
    x = rng.standard_normal((4, 5))
    w = model.weight.numpy()
    targets = (x @ w + model.bias.numpy()).argmax(axis=1)
    np.testing.assert_allclose(explain.saliency(model, x), np.abs(w[:, targets].T))
    np.testing.assert_allclose(explain.saliency(model, x, target=1, absolute=False),
                               np.broadcast_to(w[:, 1], x.shape))
    np.testing.assert_allclose(explain.gradient_x_input(model, x), w[:, targets].T * x)
    ig = explain.integrated_gradients(model, x, steps=3)
    np.testing.assert_allclose(ig.attributions, w[:, targets].T * x, rtol=1e-12)
    np.testing.assert_allclose(ig.delta, 0.0, atol=1e-12)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 3))
def test_integrated_gradients_are_complete(seed: int, n: int) -> None:
    """Attributions add up to score(x) - score(baseline), up to the quadrature's error."""
    tl.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8, activation="tanh", dtype=np.float64),
                          nn.Linear(8, 3, dtype=np.float64))
    rng = np.random.default_rng(seed)
    x, base = rng.standard_normal((n, 6)), rng.standard_normal((n, 6)) * 0.1
    ig = explain.integrated_gradients(model, x, baseline=base, steps=128)
    with tl.no_grad():
        out = model(tl.Tensor(x)).numpy()
        out0 = model(tl.Tensor(base)).numpy()
    change = out[np.arange(n), ig.targets] - out0[np.arange(n), ig.targets]
    np.testing.assert_allclose(ig.attributions.reshape(n, -1).sum(1), change, atol=1e-3)
    np.testing.assert_allclose(ig.delta, ig.attributions.reshape(n, -1).sum(1) - change,
                               atol=1e-12)


def test_occlusion_finds_the_pixels_the_score_reads() -> None:
    class Corner(nn.Module):
        def forward(self, x: tl.Tensor) -> tl.Tensor:  # score 0: the top-left 3x3 patch
            s = x[:, :, :3, :3].sum(axis=(1, 2, 3)).unsqueeze(1)
            return tl.cat([s, s * 0], axis=1)

    x = np.ones((1, 1, 12, 12))
    m = explain.occlusion(Corner(), x, target=0, window=2, stride=1)
    assert m.shape == (1, 12, 12)
    assert m[0, :3, :3].min() > 0 and np.all(m[0, 5:, :] == 0) and np.all(m[0, :, 5:] == 0)


def test_explain_keeps_the_mode_and_checks_inputs() -> None:
    model = CNN(CNNConfig(dropout=0.5))
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    a = explain.saliency(model, x)
    np.testing.assert_array_equal(a, explain.saliency(model, x))  # no dropout: deterministic
    assert model.training
    with pytest.raises(ValueError, match="target classes"):
        explain.saliency(model, x, target=10)
    with pytest.raises(TypeError, match="floating point"):
        explain.saliency(model, x.astype(np.int64))
    with pytest.raises(ValueError, match="nan or inf"):
        explain.saliency(model, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="steps"):
        explain.integrated_gradients(model, x, steps=0)


# --- the explain command --------------------------------------------------------------------------
def _check_png(path: Path, min_side: int = 200) -> None:
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side
    assert float(img[..., :3].std()) > 0.05  # not a blank canvas


def test_explain_mnist_cnn_writes_digit_saliency_and_integrated_gradients(tmp_path: Path,
                                                                        capsys) -> None:
    tl.manual_seed(0)
    ckpt = tmp_path / "cnn.safetensors"
    save_checkpoint(ckpt, CNN(CNNConfig()).state_dict(),
                    {"recipe": "mnist-cnn", "args": {"dropout": 0.25}})
    out = tmp_path / "seven.png"
    assert cli.main(["explain", "mnist-cnn", str(ckpt), "--index", "7", "--steps", "8",
                     "--out", str(out)]) == 0
    assert "test image 7: label" in capsys.readouterr().out
    _check_png(out)
    assert cli.main(["explain", "shakespeare-gpt", str(ckpt)]) == 1
    assert "written by 'mnist-cnn'" in capsys.readouterr().err
    assert cli.main(["explain", "mnist-cnn", str(ckpt), "--index", "10000"]) == 1
    assert "--index" in capsys.readouterr().err
    assert cli.main(["explain", "mnist-cnn", str(tmp_path / "missing")]) == 1


def test_explain_shakespeare_gpt_writes_attention_maps(tmp_path: Path, capsys) -> None:
    tl.manual_seed(0)
    vocab = datasets.CharVocab("ROME: abcdefghijklmnopqrstuvwxyz\n")
    config = GPTConfig(vocab_size=vocab.size, block_size=16, d_model=16, num_heads=2,
                       num_layers=2, d_ff=32)
    ckpt = tmp_path / "gpt.safetensors"
    save_checkpoint(ckpt, GPT(config).state_dict(), {
        "recipe": "shakespeare-gpt", "config": asdict(config), "vocab": "".join(vocab.itos)})
    out = tmp_path / "attention.png"
    assert cli.main(["explain", "shakespeare-gpt", str(ckpt), "--prompt", "ROMEO: be",
                     "--out", str(out)]) == 0
    assert "2 layers x 2 heads" in capsys.readouterr().out
    _check_png(out)


# --- the tape as a picture ------------------------------------------------------------------------
def test_tape_dot_has_every_node_with_saved_bytes_and_times(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 8, activation="relu"), nn.Linear(8, 3))
    x = tl.Tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    with tl.profile() as records:
        loss = F.cross_entropy(model(x), np.array([0, 1, 2, 0, 1]))
        graph = viz.tape(loss, names=model)
        summary = loss.tape()
        loss.backward()
    ops = [n.op for n in graph.nodes if not n.leaf]
    assert ops == ["Linear", "Linear", "SoftmaxCrossEntropy"]
    assert {n.op for n in graph.nodes if n.leaf} == {name for name, _ in model.named_parameters()}
    assert f"saved for backward: {graph.saved_bytes:,} bytes" in summary
    dot = graph.to_dot(records)
    edges = [line for line in dot.splitlines() if re.fullmatch(r"  n\d+ -> n\d+;", line)]
    assert dot.startswith("digraph tape {") and len(edges) == 6
    assert dot.count("fwd ") == 3 and dot.count("bwd ") == 3
    written = graph.render(tmp_path / "tape.dot", records)
    assert written.read_text() == dot
    with pytest.raises(ValueError, match="freed"):
        viz.tape(loss)
    with pytest.raises(ValueError, match="no graph"):
        viz.tape(tl.Tensor([1.0]))


def test_tape_render_runs_graphviz_or_says_it_is_missing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    w = tl.Tensor(np.ones(3, np.float32), requires_grad=True)
    graph = viz.tape((w * w).sum())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="dot"):
        graph.render(tmp_path / "t.svg")
    assert (tmp_path / "t.dot").exists()
    # a stand-in `dot` that copies its input: checks the command line, not Graphviz itself
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text(f"#!{sys.executable}\nimport shutil, sys\n"
                    "assert sys.argv[1] == '-Tsvg' and sys.argv[3] == '-o'\n"
                    "shutil.copy(sys.argv[2], sys.argv[4])\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    out = graph.render(tmp_path / "t.svg")
    assert out.read_text().startswith("digraph tape")
