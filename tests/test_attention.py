"""Attention: the masked softmax op, scaled dot-product attention, rotary embedding, multi-head
attention and the Transformer block.

Forward against direct NumPy formulas, float64 gradcheck on hypothesis shapes (causal and boolean
masks, fully masked rows), kernels against references (float32/float64, size 1, broadcast masks,
non-contiguous), against torch (scaled_dot_product_attention, nn.MultiheadAttention), a tiny GPT
that overfits a string, and `tinygrad-lab sample` on a checkpoint the GPT recipe wrote.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lab as tl
from tinygrad_lab import Tensor, cli, nn, optim
from tinygrad_lab.backends import REFERENCES, get_backend
from tinygrad_lab.models import gpt as G
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import check_forward, gradcheck
from tinygrad_lab.testing import strategies as tst

MODULE_EXAMPLES = settings(max_examples=15)  # each example is a few hundred forward passes


# --- direct NumPy formulas, one row at a time (a different form from the references) ------------
def np_masked_softmax(s: np.ndarray, scale: float, causal: bool, mask: Any) -> np.ndarray:
    t, n = s.shape[-2:]
    keep = np.ones(s.shape, bool)
    if mask is not None:
        keep &= np.broadcast_to(mask, s.shape)
    out = np.zeros_like(s)
    for idx in np.ndindex(*s.shape[:-1]):
        i = idx[-1]
        cols = [j for j in range(n) if keep[idx][j] and (not causal or j <= i + n - t)]
        if cols:
            z = np.exp(scale * s[idx][cols])
            out[idx][cols] = z / z.sum()
    return out


def np_attention(q, k, v, mask=None, causal=False):
    weights = np_masked_softmax(q @ np.swapaxes(k, -1, -2), 1 / np.sqrt(q.shape[-1]), causal, mask)
    return weights @ v


def np_rotary(x: np.ndarray, positions: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """Pairs as complex numbers x[2i] + i x[2i+1], multiplied by exp(i p theta_i)."""
    d = x.shape[-1]
    theta = base ** (-np.arange(0, d, 2) / d)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * positions[:, None] * theta)
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


# --- strategies ----------------------------------------------------------------------------------
@st.composite
def attention_case(draw: st.DrawFn, max_side: int = 4) -> dict[str, Any]:
    """Shapes (B, H, T, S, D), causal or not, and a boolean mask of some broadcast form (or none),
    sometimes with a fully masked query row."""
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    t, s, d = (draw(st.integers(1, max_side)) for _ in range(3))
    causal = draw(st.booleans())
    form = draw(st.sampled_from(["none", "(T, S)", "(B, 1, T, S)", "(B, 1, 1, S)", "(H, T, S)"]))
    mask_shape = {"none": None, "(T, S)": (t, s), "(B, 1, T, S)": (b, 1, t, s),
                  "(B, 1, 1, S)": (b, 1, 1, s), "(H, T, S)": (h, t, s)}[form]
    mask = None
    if mask_shape is not None:
        mask = draw(hnp.arrays(np.bool_, mask_shape))
        if mask.shape[-2] == t and draw(st.booleans()):
            mask[..., draw(st.integers(0, t - 1)), :] = False  # a row with nothing to attend to
    return {"shape": (b, h, t, s, d), "causal": causal, "mask": mask}


# --- masked softmax -------------------------------------------------------------------------------
@given(case=attention_case(), data=st.data())
def test_masked_softmax_forward_matches_numpy(case, data, cpu_path):
    b, h, t, s, _ = case["shape"]
    scores = data.draw(tst.arrays((b, h, t, s)))
    scale, causal, mask = 0.7, case["causal"], case["mask"]
    check_forward(lambda x: F.masked_softmax(x, scale, causal, mask),
                  lambda x: np_masked_softmax(x, scale, causal, mask), scores, atol=1e-12)


@given(case=attention_case(), data=st.data())
def test_masked_softmax_gradcheck(case, data, cpu_path):
    b, h, t, s, _ = case["shape"]
    scores = data.draw(tst.arrays((b, h, t, s)))
    assert gradcheck(lambda x: F.masked_softmax(x, 0.7, case["causal"], case["mask"]), scores)


def test_masked_softmax_fully_masked_rows_are_zero_not_nan(cpu_path):
    scores = Tensor(np.random.default_rng(0).standard_normal((1, 2, 3, 3)), requires_grad=True)
    mask = np.array([[True, True, True], [False, False, False], [True, False, True]])
    y = F.masked_softmax(scores, 1.0, causal=False, mask=mask)
    (y * Tensor(np.arange(18.0).reshape(1, 2, 3, 3))).sum().backward()
    out = y.numpy()
    assert np.isfinite(out).all() and np.isfinite(scores.grad.numpy()).all()
    np.testing.assert_array_equal(out[:, :, 1], 0)
    np.testing.assert_array_equal(scores.grad.numpy()[:, :, 1], 0)
    np.testing.assert_allclose(out[:, :, [0, 2]].sum(-1), 1)
    # causal with more queries than keys: the first T - S queries see nothing
    y = F.masked_softmax(Tensor(np.ones((4, 2))), causal=True).numpy()
    np.testing.assert_allclose(y, [[0, 0], [0, 0], [1, 0], [0.5, 0.5]])


def test_masked_softmax_rejects_bad_masks():
    scores = Tensor(np.zeros((1, 1, 2, 3)))
    with pytest.raises(TypeError, match="boolean"):
        F.masked_softmax(scores, mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        F.masked_softmax(scores, mask=np.ones((2, 2), bool))


# --- kernels against references ------------------------------------------------------------------
KERNEL_CASES = [  # (scores shape, mask shape or None, causal)
    ((1, 1, 1, 1), None, False),
    ((1, 1, 1, 1), (1, 1), True),
    ((2, 3, 5, 5), None, True),
    ((2, 3, 4, 7), (2, 1, 4, 7), True),
    ((2, 3, 6, 4), (3, 6, 4), True),
    ((3, 5), (5,), False),
    ((2, 4, 64, 64), (2, 1, 1, 64), True),
    ((16, 4, 64, 64), None, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, mask_shape, causal", KERNEL_CASES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_masked_softmax_kernels_match_references(dtype, shape, mask_shape, causal, contiguous):
    backend = get_backend("cpu")
    with tl.use_kernels():
        forward = backend.resolve("masked_softmax_forward")
        backward = backend.resolve("masked_softmax_backward")
        assert backend.is_kernel("masked_softmax_forward")
        assert backend.is_kernel("masked_softmax_backward")
    rng = np.random.default_rng(len(shape) + shape[-1])
    scores = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    if mask is not None and mask.ndim >= 2:
        mask[..., 0, :] = False
    if not contiguous:  # the same values through a transposed copy's view
        scores = np.swapaxes(np.ascontiguousarray(np.swapaxes(scores, -1, -2)), -1, -2)
        g = np.swapaxes(np.ascontiguousarray(np.swapaxes(g, -1, -2)), -1, -2)
        if mask is not None:
            mask = np.asfortranarray(mask)
    want = REFERENCES["masked_softmax_forward"](scores, 0.3, causal, mask)
    got = forward(scores, 0.3, causal, mask)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    assert got.dtype == want.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, **tol)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(backward(g, got, 0.3),
                               REFERENCES["masked_softmax_backward"](g, want, 0.3), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, mask_shape, causal", [
    *KERNEL_CASES, ((4, 8, 128, 128), None, True), ((2, 2, 37, 20), (2, 1, 37, 20), True)])
def test_masked_softmax_columns_kernels_match_references(dtype, shape, mask_shape, causal):
    """The keys-first kernels (what QKVAttention runs on the CPU) on scores^T give the row
    references' answers transposed; odd S, T cover the rounding of each row's start to 16."""
    backend = get_backend("cpu")
    with tl.use_kernels():
        forward = backend.resolve("masked_softmax_columns_forward")
        backward = backend.resolve("masked_softmax_columns_backward")
        assert backend.is_kernel("masked_softmax_columns_forward")
        assert backend.is_kernel("masked_softmax_columns_backward")
    rng = np.random.default_rng(len(shape) + shape[-1])
    scores = (rng.standard_normal(shape) * 3).astype(dtype)  # (..., T, S), queries first
    g = rng.standard_normal(shape).astype(dtype)
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    if mask is not None and mask.ndim >= 2:
        mask[..., 0, :] = False  # a query with no key: a column of zeros
    want = REFERENCES["masked_softmax_forward"](scores, 0.3, causal, mask)
    got_t = forward(np.ascontiguousarray(np.swapaxes(scores, -1, -2)), 0.3, causal, mask)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}
    assert got_t.dtype == dtype and got_t.shape == np.swapaxes(want, -1, -2).shape
    np.testing.assert_allclose(np.swapaxes(got_t, -1, -2), want, **tol)
    assert np.isfinite(got_t).all()
    g_t = np.ascontiguousarray(np.swapaxes(g, -1, -2))
    np.testing.assert_allclose(np.swapaxes(backward(g_t, got_t, 0.3, causal), -1, -2),
                               REFERENCES["masked_softmax_backward"](g, want, 0.3), **tol)
    np.testing.assert_allclose(REFERENCES["masked_softmax_columns_forward"](
        np.swapaxes(scores, -1, -2), 0.3, causal, mask), got_t, **tol)
    reference_backward = REFERENCES["masked_softmax_columns_backward"]
    np.testing.assert_allclose(reference_backward(g_t, got_t, 0.3, causal),
                               backward(g_t, got_t, 0.3, causal), **tol)


# --- scaled dot-product attention ----------------------------------------------------------------
def _qkv(data: st.DataObject, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    b, h, t, s, d = shape
    return (data.draw(tst.arrays((b, h, t, d))), data.draw(tst.arrays((b, h, s, d))),
            data.draw(tst.arrays((b, h, s, d))))


@given(case=attention_case(), data=st.data())
def test_sdpa_forward_matches_numpy(case, data):
    q, k, v = _qkv(data, case["shape"])
    check_forward(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, case["mask"],
                                                                 case["causal"]),
                  lambda q, k, v: np_attention(q, k, v, case["mask"], case["causal"]),
                  q, k, v, atol=1e-12)


@given(case=attention_case(max_side=3), data=st.data())
def test_sdpa_gradcheck(case, data, cpu_path):
    q, k, v = _qkv(data, case["shape"])
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, case["mask"], case["causal"]), q, k, v)


@pytest.mark.parametrize("causal, mask_shape", [(False, None), (True, None), (False, (2, 1, 5, 5)),
                                                (True, (5, 5)), (False, (2, 1, 1, 5))])
def test_sdpa_matches_torch(causal, mask_shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    if mask is not None:
        mask[..., 0] = True  # torch gives NaN for rows with nothing to attend to
    seed = rng.standard_normal((2, 3, 5, 4))
    ours = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*ours, mask=mask, causal=causal)
    out.backward(seed)
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    ref = torch.nn.functional.scaled_dot_product_attention(
        *theirs, attn_mask=None if mask is None else torch.from_numpy(mask), is_causal=causal)
    ref.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)


# --- rotary embedding -----------------------------------------------------------------------------
@st.composite
def rotary_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    lead = draw(tst.shapes(max_dims=2, max_side=2))
    t, half = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    x = draw(tst.arrays((*lead, t, 2 * half)))
    positions = draw(hnp.arrays(np.int64, (t,), elements=st.integers(0, 50)))
    return x, positions


@given(case=rotary_case())
def test_rotary_forward_matches_complex_rotation(case):
    x, positions = case
    check_forward(lambda x: F.apply_rotary(x, positions), lambda x: np_rotary(x, positions), x,
                  atol=1e-12)


@given(case=rotary_case())
def test_rotary_gradcheck(case):
    x, positions = case
    assert gradcheck(lambda x: F.apply_rotary(x, positions), x)


def test_rotary_scores_depend_on_relative_position_only():
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 1, 8))
    rope = nn.RotaryEmbedding(8)

    def score(p: int, s: int) -> float:
        qr = rope(Tensor(q), positions=[p]).numpy()
        kr = rope(Tensor(k), positions=[s]).numpy()
        return float((qr * kr).sum())

    assert score(3, 1) == pytest.approx(score(10, 8), rel=1e-5)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), rel=1e-5)
    with pytest.raises(ValueError, match="even"):
        nn.RotaryEmbedding(7)


# --- positional encodings -------------------------------------------------------------------------
def test_sinusoidal_encoding_values():
    pe = nn.SinusoidalPositionalEncoding(6, max_len=10, dtype=np.float64)
    out = pe(Tensor(np.zeros((1, 4, 6)))).numpy()[0]
    p, i = np.arange(4)[:, None], np.arange(3)[None, :]
    np.testing.assert_allclose(out[:, 0::2], np.sin(p / 10000 ** (2 * i / 6)))
    np.testing.assert_allclose(out[:, 1::2], np.cos(p / 10000 ** (2 * i / 6)))
    assert pe.parameters() == [] and pe.state_dict() == {}
    with pytest.raises(ValueError, match="max_len"):
        pe(Tensor(np.zeros((1, 11, 6))))


def test_learned_positional_embedding_trains_the_used_rows():
    wpe = nn.LearnedPositionalEmbedding(8, 4)
    x = Tensor(np.ones((2, 3, 4), np.float32), requires_grad=True)
    wpe(x, offset=2).sum().backward()
    grad = wpe.weight.grad.numpy()
    np.testing.assert_array_equal(grad[2:5], 2.0)  # two batch rows each
    np.testing.assert_array_equal(grad[[0, 1, 5, 6, 7]], 0.0)


# --- multi-head attention and the Transformer block -----------------------------------------------
def with_parameters(module: nn.Module, x: np.ndarray, **kw: Any) -> tuple[Callable, list]:
    """fn(x, *params) running `module` with the given tensors in place of its parameters, and
    the parameters' float64 values, for gradcheck over inputs and weights together."""
    names = [name for name, _ in module.named_parameters()]
    values = [p.numpy().astype(np.float64) for _, p in module.named_parameters()]

    def fn(x: Tensor, *params: Tensor) -> Tensor:
        for name, p in zip(names, params):
            owner = module
            *path, leaf = name.split(".")
            for part in path:
                owner = getattr(owner, part)
            setattr(owner, leaf, p)
        return module(x, **kw)

    return fn, [x, *values]


@st.composite
def mha_case(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.integers(1, 2))
    d_model = heads * draw(st.sampled_from([2, 4]))
    b, t = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    mask = draw(st.none() | hnp.arrays(np.bool_, (b, 1, 1, t)))
    return {"heads": heads, "d_model": d_model, "x": draw(tst.arrays((b, t, d_model))),
            "causal": draw(st.booleans()), "mask": mask, "rope": draw(st.booleans())}


@MODULE_EXAMPLES
@given(case=mha_case())
def test_multi_head_attention_gradcheck(case):
    tl.manual_seed(0)
    mha = nn.MultiHeadAttention(case["d_model"], case["heads"], causal=case["causal"],
                                rope=case["rope"], dtype=np.float64)  # head sizes are even
    for p in mha.parameters():  # non-zero biases, so their gradients mean something
        p.data[...] = np.random.default_rng(1).uniform(-1, 1, p.shape)
    fn, inputs = with_parameters(mha, case["x"], mask=case["mask"])
    assert gradcheck(fn, *inputs)


@MODULE_EXAMPLES
@given(x=st.integers(1, 2).flatmap(lambda b: tst.arrays((b, 3, 4))), causal=st.booleans())
def test_transformer_block_gradcheck(x, causal):
    tl.manual_seed(0)
    block = nn.TransformerBlock(4, 2, 8, causal=causal, dtype=np.float64)
    rng = np.random.default_rng(2)
    for p in block.parameters():
        p.data[...] += rng.uniform(-0.3, 0.3, p.shape)
    fn, inputs = with_parameters(block, x)
    assert gradcheck(fn, *inputs)


@pytest.mark.parametrize("mask_shape", [None, (3, 1, 1, 5), (3, 2, 5, 5), (5, 5), (1, 2, 1, 5)])
@pytest.mark.parametrize("rope", [False, True])
def test_attention_in_batch_chunks_matches_the_whole_batch(monkeypatch, mask_shape, rope,
                                                           cpu_path):
    """QKVAttention works through the batch in cache-sized chunks (a mask with a batch axis cut
    to each chunk's rows): one sample per chunk gives the whole batch's outputs and gradients."""
    from tinygrad_lab.ops import attention as A

    rng = np.random.default_rng(0)
    x, seed = rng.standard_normal((3, 5, 12)), rng.standard_normal((3, 5, 12))
    mask = None if mask_shape is None else rng.random(mask_shape) > 0.3
    calls: list[int] = []
    chunks = A.QKVAttention._chunks

    def counted(self, *args, **kw):
        out = chunks(self, *args, **kw)
        calls.append(len(out))
        return out

    monkeypatch.setattr(A.QKVAttention, "_chunks", counted)
    monkeypatch.setattr(A.helpers, "num_threads", lambda: 1)  # chunks by size alone

    def run() -> list[np.ndarray]:
        tl.manual_seed(0)
        mha = nn.MultiHeadAttention(12, 2, causal=True, rope=rope, dtype=np.float64)
        xt = Tensor(x, requires_grad=True)
        mha(xt, mask=mask).backward(seed)
        return [mha(xt, mask=mask).numpy(), xt.grad.numpy(),
                *[p.grad.numpy() for p in mha.parameters()]]

    whole = run()
    assert set(calls) == {1}
    monkeypatch.setattr(A, "CHUNK_BYTES", 1)  # one sample per chunk
    calls.clear()
    for got, want in zip(run(), whole, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert set(calls) == {3}


@pytest.mark.parametrize("threads", [2, 3])
def test_attention_chunks_on_threads_match_one_thread_and_keep_the_kernel_switch(monkeypatch,
                                                                                  threads):
    """On the CPU with n threads attention runs n batch chunks at once (the caller and a pool of
    n - 1): the outputs and gradients are those of one thread, and each worker runs with the
    caller's kernel switch."""
    import threading

    from tinygrad_lab.ops import attention as A

    rng = np.random.default_rng(3)
    x, seed = rng.standard_normal((5, 6, 12)), rng.standard_normal((5, 6, 12))
    mask = rng.random((5, 1, 6, 6)) > 0.2
    seen: list[tuple[str, bool]] = []
    weights = A.QKVAttention._weights
    worker_started = threading.Event()
    wait_for_a_worker = [False]

    def recorded(self, *args):
        name = threading.current_thread().name
        seen.append((name, tl.helpers.kernels_enabled()))
        if name.startswith("attention"):
            worker_started.set()
        elif wait_for_a_worker[0]:  # chunks this small: the caller could take them all first
            assert worker_started.wait(timeout=30)
        return weights(self, *args)

    monkeypatch.setattr(A.QKVAttention, "_weights", recorded)

    def run(n: int, kernels: bool) -> list[np.ndarray]:
        monkeypatch.setattr(A.helpers, "num_threads", lambda: n)
        tl.manual_seed(0)
        mha = nn.MultiHeadAttention(12, 2, causal=True, rope=True, dtype=np.float64)
        xt = Tensor(x, requires_grad=True)
        with tl.use_kernels() if kernels else tl.reference():
            out = mha(xt, mask=mask)
            out.backward(seed)
        return [out.numpy(), xt.grad.numpy(), *[p.grad.numpy() for p in mha.parameters()]]

    for kernels in (True, False):
        one = run(1, kernels)
        assert all(name == threading.current_thread().name for name, _ in seen)
        seen.clear()
        worker_started.clear()
        wait_for_a_worker[0] = True
        many = run(threads, kernels)
        wait_for_a_worker[0] = False
        names = {name.split("_")[0] for name, _ in seen}
        assert names <= {"attention", threading.current_thread().name}  # the pool, the caller
        assert "attention" in names
        assert {on for _, on in seen} == {kernels}
        seen.clear()
        for got, want in zip(many, one, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def _copy_into_torch(ours: nn.MultiHeadAttention, theirs: Any) -> None:
    """Ours keeps weights (in, out); torch keeps (out, in): copy transposed."""
    import torch

    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.from_numpy(ours.qkv.weight.numpy().T))
        theirs.in_proj_bias.copy_(torch.from_numpy(ours.qkv.bias.numpy()))
        theirs.out_proj.weight.copy_(torch.from_numpy(ours.proj.weight.numpy().T))
        theirs.out_proj.bias.copy_(torch.from_numpy(ours.proj.bias.numpy()))


@pytest.mark.parametrize("mode", ["plain", "causal", "key_padding"])
def test_multi_head_attention_matches_torch(mode, device):
    torch = pytest.importorskip("torch")
    b, t, e, h = 2, 5, 8, 2
    rng = np.random.default_rng(0)
    ours = nn.MultiHeadAttention(e, h, dtype=np.float64)
    for p in ours.parameters():
        p.data[...] = rng.uniform(-0.5, 0.5, p.shape)
    theirs = torch.nn.MultiheadAttention(e, h, batch_first=True, dtype=torch.float64)
    _copy_into_torch(ours, theirs)
    ours.to(device.device)
    x = rng.standard_normal((b, t, e))
    seed = rng.standard_normal((b, t, e))  # the mask and seed stay NumPy: the API moves them
    kw: dict[str, Any] = {}
    our_mask = None
    if mode == "causal":  # torch's boolean masks mark what is hidden, ours what is kept
        kw["attn_mask"] = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    if mode == "key_padding":
        keep = np.ones((b, t), bool)
        keep[1, 3:] = False
        kw["key_padding_mask"] = torch.from_numpy(~keep)
        our_mask = keep[:, None, None, :]  # (B, 1, 1, S)
    xt = device.tensor(x, requires_grad=True)
    out = ours(xt, mask=our_mask, causal=mode == "causal")
    out.backward(seed)
    xr = torch.tensor(x, requires_grad=True)
    ref, _ = theirs(xr, xr, xr, need_weights=False, **kw)
    ref.backward(torch.from_numpy(seed))
    close = {"rtol": 1e-9, "atol": 1e-11}
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **close)
    np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), **close)
    np.testing.assert_allclose(ours.qkv.weight.grad.numpy(), theirs.in_proj_weight.grad.numpy().T,
                               **close)
    np.testing.assert_allclose(ours.qkv.bias.grad.numpy(), theirs.in_proj_bias.grad.numpy(),
                               **close)
    np.testing.assert_allclose(ours.proj.weight.grad.numpy(),
                               theirs.out_proj.weight.grad.numpy().T, **close)
    np.testing.assert_allclose(ours.proj.bias.grad.numpy(), theirs.out_proj.bias.grad.numpy(),
                               **close)


def test_multi_head_attention_shapes_and_errors():
    mha = nn.MultiHeadAttention(8, 2)
    assert mha(Tensor(np.zeros((3, 4, 8), np.float32))).shape == (3, 4, 8)
    assert sorted(mha.state_dict()) == ["proj.bias", "proj.weight", "qkv.bias", "qkv.weight"]
    assert mha.qkv.weight.shape == (8, 24)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiHeadAttention(6, 4)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        mha(Tensor(np.zeros((4, 8), np.float32)))


def test_transformer_block_is_causal():
    """Changing a later position must not change any earlier output."""
    tl.manual_seed(0)
    block = nn.TransformerBlock(8, 2, 16, causal=True)
    x = np.random.default_rng(0).standard_normal((1, 6, 8)).astype(np.float32)
    y1 = block(Tensor(x)).numpy()
    x[0, 4:] += 1.0
    y2 = block(Tensor(x)).numpy()
    np.testing.assert_allclose(y1[0, :4], y2[0, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(y1[0, 4:], y2[0, 4:])


def test_transformer_block_dropout_only_in_training():
    tl.manual_seed(0)
    block = nn.TransformerBlock(8, 2, 16, dropout=0.5)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32))
    block.eval()
    np.testing.assert_array_equal(block(x).numpy(), block(x).numpy())
    block.train()
    assert not np.allclose(block(x).numpy(), block(x).numpy())


# --- end to end -----------------------------------------------------------------------------------
def test_tiny_gpt_overfits_a_string():
    text = "to be, or not to be, that is the question: "
    vocab = tl.datasets.CharVocab(text)
    ids = vocab.encode(text * 3)
    tl.manual_seed(0)
    model = G.GPT(G.GPTConfig(vocab_size=vocab.size, block_size=16, d_model=32, num_heads=2,
                              num_layers=2, d_ff=64))
    starts = np.arange(0, 32, 4)
    x = ids[starts[:, None] + np.arange(16)]  # (B, T)
    y = ids[starts[:, None] + np.arange(1, 17)]
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(100):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    # the window at offset 0, continued from its first 9 characters
    out = vocab.decode(G.generate(model, vocab.encode("to be, or"), 7, temperature=0.01,
                                  rng=np.random.default_rng(0)))
    assert out == "to be, or not to"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("gpt") / "gpt.npz"
    status = cli.main(["train", "shakespeare-gpt", "--steps", "3", "--eval-every", "3",
                       "--eval-batches", "1", "--d-model", "16", "--heads", "2", "--layers", "1",
                       "--context", "16", "--save", str(path)])
    assert status == 0 and path.exists()
    _, meta = tl.serialization.load_checkpoint(path)
    assert np.isfinite(meta["val_loss"])
    return str(path)


def test_sample_command_prints_prompt_and_continuation(checkpoint):
    proc = subprocess.run([sys.executable, "-m", "tinygrad_lab", "sample", checkpoint,
                           "--length", "40", "--prompt", "ROMEO:", "--top-k", "5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout[:-1]  # print's newline
    assert len(text) == len("ROMEO:") + 40 and text.startswith("ROMEO:")
    _, meta = tl.serialization.load_checkpoint(checkpoint)
    assert set(text) <= set(meta["vocab"]) and len(meta["vocab"]) == 65
    assert meta["config"]["block_size"] == 16 and meta["recipe"] == "shakespeare-gpt"


def _sample(checkpoint: str, seed: int, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    status = cli.main(["sample", checkpoint, "--length", "50", "--prompt", "\n",
                       "--temperature", "1.0", "--seed", str(seed)])
    assert status == 0
    return capsys.readouterr().out[:-1]  # print's newline


def test_sample_is_seeded_and_crops_to_the_block_size(checkpoint, capsys):
    first = _sample(checkpoint, 3, capsys)  # 51 characters through a 16-character context
    assert len(first) == 51 and first == _sample(checkpoint, 3, capsys)
    assert _sample(checkpoint, 4, capsys) != first


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_attention_threads_work_in_a_forked_child(monkeypatch):
    """A child forked after the pool exists has none of its threads: it makes its own. (Sizes
    this small keep every kernel on its serial branch: GNU OpenMP itself is not fork-safe.)"""
    import os

    from tinygrad_lab.ops import attention as A

    monkeypatch.setattr(A.helpers, "num_threads", lambda: 2)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 5, 12)))
    mha = nn.MultiHeadAttention(12, 2, causal=True, dtype=np.float64)
    want = mha(x).numpy()  # the parent's pool now exists
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only when its attention ran and matched
        import signal

        signal.alarm(60)  # a pool whose threads stayed in the parent would wait forever
        ok = False
        try:
            ok = bool(np.allclose(mha(x).numpy(), want))
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_attention_on_a_device_takes_the_whole_batch_at_once(monkeypatch):
    """Chunks are about the CPU's caches: a device (here the stand-in, CuPy's code path) runs
    each product once over the whole batch, forward and backward."""
    from tinygrad_lab.ops import attention as A
    from tinygrad_lab.testing import standin

    standin.register()
    monkeypatch.setattr(A, "CHUNK_BYTES", 1)  # on the CPU: one sample per chunk
    seen: list[int] = []
    weights = A.QKVAttention._weights

    def recorded(self, q, k, mask):
        seen.append(q.shape[0])
        return weights(self, q, k, mask)

    monkeypatch.setattr(A.QKVAttention, "_weights", recorded)
    mha = nn.MultiHeadAttention(8, 2, causal=True).to("standin")
    mha(Tensor(np.ones((3, 4, 8), np.float32), device="standin")).sum().backward()
    assert seen == [3, 3]
    seen.clear()
    mha.to("cpu")(Tensor(np.ones((3, 4, 8), np.float32))).sum().backward()
    assert seen == [1] * 6
