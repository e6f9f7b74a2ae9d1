"""Attention and the Transformer block: scaled dot-product attention, multi-head self-attention,
a pre-LayerNorm block, and positional information (sinusoidal, learned, rotary).

Shape letters: B batch, T query positions, S key positions (S = T in self-attention), C model
width (d_model), H heads, D head size (C // H), F the MLP's hidden width (d_ff).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinygrad_lab.function import no_grad
from tinygrad_lab.nn import init
from tinygrad_lab.nn.conv import Dropout
from tinygrad_lab.nn.layers import Linear
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.nn.norm import LayerNorm
from tinygrad_lab.ops import attention as _attention
from tinygrad_lab.tensor import Tensor


def _mask_array(mask: Any, like: Tensor, shape: tuple[int, ...], op: str) -> Any:
    """A boolean mask (Tensor, array or nested lists; True = keep) broadcastable to `shape`, as
    a backend array; None stays None."""
    if mask is None:
        return None
    data = mask.data if isinstance(mask, Tensor) else like._backend.asarray(np.asarray(mask))
    if data.dtype != np.bool_:
        raise TypeError(f"{op}: attention mask must be boolean (True = attend), got {data.dtype}")
    try:
        fits = data.ndim <= len(shape) and np.broadcast_shapes(tuple(data.shape), shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: mask shape {tuple(data.shape)} does not broadcast to {shape}")
    return data


# --- functional ---------------------------------------------------------------------------------
def masked_softmax(scores: Tensor, scale: float = 1.0, causal: bool = False,
                   mask: Any = None) -> Tensor:
    """softmax(scale * scores) over the last axis with hidden entries at 0, one fused node.

    scores (..., T, S); causal hides key j from query i when j > i + (S - T); mask is boolean,
    broadcastable to scores, True = keep. A row with every key hidden gives zeros.
    """
    if scores.ndim < 2:
        raise ValueError(f"masked_softmax: scores need (..., T, S), got shape {scores.shape}")
    m = _mask_array(mask, scores, scores.shape, "masked_softmax")
    return _attention.MaskedSoftmax.apply(scores, scale=float(scale), causal=bool(causal), mask=m)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Any = None,
                                 causal: bool = False, scale: float | None = None) -> Tensor:
    """softmax(q @ k^T / sqrt(D), masked) @ v (Vaswani et al. 2017).

    q (B, H, T, D), k (B, H, S, D), v (B, H, S, Dv) -> (B, H, T, Dv); any leading axes work.
    mask: boolean, broadcastable to (B, H, T, S), True = attend. causal: query i sees keys
    j <= i + (S - T). scale defaults to 1 / sqrt(D).
    """
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"scaled_dot_product_attention: q, k, v need the same rank >= 2, got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: shapes q {q.shape}, k {k.shape}, "
                         f"v {v.shape} do not fit (q, k share D; k, v share S)")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-1, -2)  # (B, H, T, S)
    weights = masked_softmax(scores, scale, causal, mask)  # (B, H, T, S)
    return weights @ v  # (B, H, T, Dv)


def apply_rotary(x: Tensor, positions: Any = None, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021) of x (..., T, D), one node.

    Each pair (x[2i], x[2i+1]) at position p is rotated by p * base**(-2i / D); positions is an
    integer sequence of length T (default 0..T-1). Apply it to q and k, never to v: then
    q_p . k_s depends on p - s only.
    """
    if x.ndim < 2:
        raise ValueError(f"apply_rotary: x needs (..., T, D), got shape {x.shape}")
    t, d = x.shape[-2], x.shape[-1]
    cos, sin = _rotary_tables("apply_rotary", t, positions, d, float(base), x)  # (T, D) each
    return _attention.Rotary.apply(x, cos=cos, sin=sin)


_ROTARY: dict[tuple[Any, ...], tuple[Any, Any]] = {}
"""RoPE (cos, sin) tables already on a device, by (positions, size, base, dtype, device)."""


def _rotary_tables(op: str, t: int, positions: Any, dim: int, base: float,
                   like: Tensor) -> tuple[Any, Any]:
    """(cos, sin), each (T, dim), on like's device and dtype. Computed on the host (float64,
    then cast: the same bits on every device) and moved once per key, then cached: a training
    step rotating q and k of every layer makes no host-to-device copy."""
    pos = np.arange(t) if positions is None else np.asarray(positions).reshape(-1)
    if pos.shape != (t,):
        raise ValueError(f"{op}: {pos.size} positions for {t} time steps")
    # the bytes alone are ambiguous: int32 [1, 0] and int64 [1] have the same ones
    key = (pos.dtype.str, pos.shape, pos.tobytes(), dim, base, like.dtype.str, like.device)
    tables = _ROTARY.get(key)
    if tables is None:
        cos, sin = _attention.rotary_tables(pos, dim, base, like.dtype)
        tables = (like._backend.asarray(cos), like._backend.asarray(sin))
        if len(_ROTARY) >= 64:  # many distinct position lists (sampling offsets): start over
            _ROTARY.clear()
        _ROTARY[key] = tables
    return tables


# --- positional information ---------------------------------------------------------------------
class SinusoidalPositionalEncoding(Module):
    """Adds the fixed encoding of Vaswani et al. 2017 to x (B, T, C):
    P[p, 2i] = sin(p / 10000**(2i / C)), P[p, 2i+1] = cos(p / 10000**(2i / C)).

    The table is a non-persistent buffer: moved by `.to()`, rebuilt from (d_model, max_len) and
    so neither trained nor saved.
    """

    def __init__(self, d_model: int, max_len: int = 4096, dtype: Any = np.float32) -> None:
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        pos = np.arange(max_len, dtype=np.float64)[:, None]  # (max_len, 1)
        freq = 10000.0 ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)  # (C/2,)
        table = np.zeros((max_len, d_model))
        table[:, 0::2] = np.sin(pos * freq)
        table[:, 1::2] = np.cos(pos * freq[: d_model // 2])
        self.register_buffer("table", Tensor(table.astype(dtype)), persistent=False)  # (max_len, C)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        t = x.shape[-2]
        if offset + t > self.max_len:
            raise ValueError(f"positions {offset}..{offset + t - 1} exceed max_len {self.max_len}")
        return x + self.table[offset:offset + t]  # (B, T, C) + (T, C)

    def extra_repr(self) -> str:
        return f"{self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(Module):
    """Adds a trained vector per position to x (B, T, C) (GPT-2's wpe); weight (max_len, C),
    initialised N(0, 0.02)."""

    def __init__(self, max_len: int, d_model: int, dtype: Any = np.float32) -> None:
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.weight = Parameter(init.normal(0.02, (max_len, d_model), dtype))

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        t = x.shape[-2]
        if offset + t > self.max_len:
            raise ValueError(f"positions {offset}..{offset + t - 1} exceed max_len {self.max_len}")
        return x + self.weight[offset:offset + t]  # (B, T, C) + (T, C)

    def extra_repr(self) -> str:
        return f"{self.max_len}, {self.d_model}"


class RotaryEmbedding(Module):
    """RoPE for heads of size D: `rope(x)` rotates x (B, H, T, D) by positions 0..T-1 (or the
    given ones). No parameters; the cos/sin tables are cached per (positions, dtype, device)."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding needs an even head size, got {head_dim}")
        self.head_dim, self.base = head_dim, float(base)

    def forward(self, x: Tensor, positions: Any = None) -> Tensor:
        """x (..., T, D) -> x rotated by positions (default 0..T-1)."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"RotaryEmbedding({self.head_dim}) got head size {x.shape[-1]}")
        cos, sin = self.tables(x.shape[-2], positions, x)
        return _attention.Rotary.apply(x, cos=cos, sin=sin)

    def tables(self, t: int, positions: Any, like: Tensor) -> tuple[Any, Any]:
        """(cos, sin), each (T, D), on like's device and dtype; cached (shared by every
        layer: one host-to-device copy per key, none per step)."""
        return _rotary_tables("RotaryEmbedding", t, positions, self.head_dim, self.base, like)

    def extra_repr(self) -> str:
        return f"{self.head_dim}, base={self.base:g}"


# --- layers -------------------------------------------------------------------------------------
class MultiHeadAttention(Module):
    """Multi-head self-attention: one fused q/k/v projection, attention per head, one output
    projection.

    qkv.weight (C, 3C) holds [q | k | v] column blocks, each head's D columns together (the
    transpose of torch.nn.MultiheadAttention's in_proj_weight); proj.weight (C, C).
    `causal` is the default for forward; `rope=True` rotates q and k (RotaryEmbedding).
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True, causal: bool = False,
                 rope: bool = False, rope_base: float = 10000.0, dtype: Any = np.float32) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.d_model, self.num_heads = d_model, num_heads
        self.head_dim = d_model // num_heads
        self.causal = causal
        self.qkv = Linear(d_model, 3 * d_model, bias=bias, dtype=dtype)
        self.proj = Linear(d_model, d_model, bias=bias, dtype=dtype)
        self.rope = RotaryEmbedding(self.head_dim, rope_base) if rope else None

    def forward(self, x: Tensor, mask: Any = None, causal: bool | None = None,
                positions: Any = None, need_weights: bool = False
                ) -> Tensor | tuple[Tensor, Tensor]:
        """x (B, T, C) -> (B, T, C). mask: boolean, broadcastable to (B, H, T, T), True = attend.

        need_weights=True also returns the attention weights (B, H, T, T), per head (torch's
        average_attn_weights=False), without a graph: the fused node never materialises them
        for backward, so they are recomputed from the same q and k (attention_weights)."""
        self._check_input(x)
        b, t, c = x.shape
        qkv = self.qkv(x.reshape(b * t, c)).reshape(b, t, 3 * c)  # (B*T, 3C) -> (B, T, 3C)
        cos = sin = None
        if self.rope is not None:
            cos, sin = self.rope.tables(t, positions, x)  # (T, D) each
        y = _attention.QKVAttention.apply(  # (B, T, C), heads merged
            qkv, num_heads=self.num_heads, causal=self.causal if causal is None else causal,
            mask=_mask_array(mask, x, (b, self.num_heads, t, t), "MultiHeadAttention"),
            cos=cos, sin=sin)
        out = self.proj(y.reshape(b * t, c)).reshape(b, t, c)  # (B*T, C) -> (B, T, C)
        if not need_weights:
            return out
        return out, self._weights(qkv.detach(), mask, causal, positions)

    def attention_weights(self, x: Tensor, mask: Any = None, causal: bool | None = None,
                          positions: Any = None) -> Tensor:
        """softmax(q k^T / sqrt(D)) with the layer's mask, (B, H, T, T), for input x (B, T, C):
        what each query position attends to, per head. No graph (an inspection, not a loss)."""
        self._check_input(x)
        b, t, c = x.shape
        with no_grad():
            qkv = self.qkv(x.reshape(b * t, c)).reshape(b, t, 3 * c)  # (B, T, 3C)
        return self._weights(qkv, mask, causal, positions)

    def _weights(self, qkv: Tensor, mask: Any, causal: bool | None, positions: Any) -> Tensor:
        b, t, _ = qkv.shape
        h, d = self.num_heads, self.head_dim
        with no_grad():
            heads = qkv.reshape(b, t, 3, h, d).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D)
            q, k = heads[0], heads[1]
            if self.rope is not None:
                q, k = self.rope(q, positions), self.rope(k, positions)
            scores = q @ k.transpose(-1, -2)  # (B, H, T, T)
            return masked_softmax(scores, 1.0 / math.sqrt(d),
                                  self.causal if causal is None else causal, mask)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MultiHeadAttention({self.d_model}) expects (B, T, {self.d_model}), "
                             f"got {x.shape}")

    def extra_repr(self) -> str:
        extra = (", causal=True" if self.causal else "") + (", rope=True" if self.rope else "")
        return f"{self.d_model}, num_heads={self.num_heads}{extra}"


class TransformerBlock(Module):
    """Pre-LayerNorm Transformer block (GPT-2): x + attn(ln1(x)), then x + mlp(ln2(x)), the MLP
    Linear(C, F, GELU) -> Linear(F, C). Dropout (if > 0) on each branch before the residual add.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 causal: bool = False, rope: bool = False, bias: bool = True, eps: float = 1e-5,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        self.ln1 = LayerNorm(d_model, eps, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, num_heads, bias=bias, causal=causal, rope=rope,
                                       dtype=dtype)
        self.ln2 = LayerNorm(d_model, eps, dtype=dtype)
        self.fc = Linear(d_model, d_ff, bias=bias, activation="gelu", dtype=dtype)
        self.fc_out = Linear(d_ff, d_model, bias=bias, dtype=dtype)
        self.dropout = float(dropout)
        self.drop = Dropout(dropout) if dropout > 0 else None

    def forward(self, x: Tensor, mask: Any = None, causal: bool | None = None,
                positions: Any = None) -> Tensor:
        """x (B, T, C) -> (B, T, C)."""
        b, t, c = x.shape
        a = self.attn(self.ln1(x), mask, causal, positions)  # (B, T, C)
        x = x + (self.drop(a) if self.drop is not None else a)
        h = self.ln2(x).reshape(b * t, c)  # (B*T, C): one matmul per Linear, not B
        m = self.fc_out(self.fc(h)).reshape(b, t, c)  # (B*T, F) -> (B*T, C) -> (B, T, C)
        return x + (self.drop(m) if self.drop is not None else m)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout:g}" if self.dropout else ""
