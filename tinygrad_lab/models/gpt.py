"""A character- or token-level GPT (decoder-only Transformer), after nanoGPT / GPT-2.

Shape letters: B batch, T time (context), C model width, V vocabulary.

    model = GPT(GPTConfig(vocab_size=65))
    opts = configure_optimizers(model, lr=1e-3, weight_decay=0.1)
    ids = generate(model, prompt_ids, length=200, temperature=0.8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinygrad_lab import nn, optim
from tinygrad_lab.function import no_grad
from tinygrad_lab.nn import init
from tinygrad_lab.tensor import Tensor


@dataclass
class GPTConfig:
    """Every size knob of the model. The defaults are nanoGPT's shakespeare_char, scaled down:
    context 64, width 128, 4 heads, 4 layers, MLP 512."""

    vocab_size: int = 65
    block_size: int = 64  # longest context T
    d_model: int = 128  # C
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int = 512  # MLP width
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "d_model", "num_heads", "num_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ValueError(f"GPTConfig: d_model {self.d_model} must be divisible by "
                             f"num_heads {self.num_heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout}")


class GPT(nn.Module):
    """Token + learned position embeddings, `num_layers` causal pre-LN TransformerBlocks, a
    final LayerNorm and a linear head to the vocabulary (GPT-2's layout, untied head).

    Weights start as in GPT-2: N(0, 0.02), the two projections into the residual stream scaled
    by 1 / sqrt(2 * num_layers); biases 0, LayerNorm gains 1.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.wte = nn.Embedding(c.vocab_size, c.d_model)  # weight (V, C)
        self.wpe = nn.LearnedPositionalEmbedding(c.block_size, c.d_model)
        self.blocks = [nn.TransformerBlock(c.d_model, c.num_heads, c.d_ff, c.dropout, causal=True)
                       for _ in range(c.num_layers)]
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        residual_std = 0.02 / math.sqrt(2 * c.num_layers)
        for block in self.blocks:
            for linear, std in ((block.attn.qkv, 0.02), (block.attn.proj, residual_std),
                                (block.fc, 0.02), (block.fc_out, residual_std)):
                linear.weight.data[...] = init.normal(std, linear.weight.shape)
        for table in (self.wte.weight, self.head.weight):
            table.data[...] = init.normal(0.02, table.shape)

    def forward(self, idx: Any) -> Tensor:
        """idx (B, T) integer token ids (array or Tensor), T <= block_size -> logits (B, T, V)."""
        t = idx.shape[-1]
        if t > self.config.block_size:
            raise ValueError(f"GPT: {t} tokens exceed the block size {self.config.block_size}")
        x = self.wpe(self.wte(idx))  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        b, c = x.shape[0], x.shape[2]
        logits = self.head(self.ln_f(x).reshape(b * t, c))  # (B*T, C) -> (B*T, V)
        return logits.reshape(b, t, -1)  # (B, T, V)


def configure_optimizers(model: GPT, lr: float, weight_decay: float,
                         betas: tuple[float, float] = (0.9, 0.99)) -> list[optim.AdamW]:
    """Two AdamW groups, as nanoGPT: weight decay on the 2-D weight matrices of the blocks and
    the head only; biases, LayerNorm gains and the embedding tables are not decayed."""
    matrices = [p for name, p in model.named_parameters() if name.endswith("weight")
                and p.ndim == 2 and name not in ("wte.weight", "wpe.weight")]
    decayed = {id(p) for p in matrices}
    others = [p for p in model.parameters() if id(p) not in decayed]
    return [optim.AdamW(matrices, lr=lr, betas=betas, weight_decay=weight_decay),
            optim.AdamW(others, lr=lr, betas=betas, weight_decay=0.0)]


def generate(model: GPT, ids: np.ndarray, length: int, temperature: float = 1.0,
             top_k: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Append `length` sampled ids to ids (T0,), each from the logits of the last
    block_size ids, divided by temperature, restricted to the top_k likeliest (0 = all)."""
    if not temperature > 0:
        raise ValueError(f"generate: temperature must be > 0, got {temperature}")
    rng = rng or np.random.default_rng()
    out = [int(i) for i in ids]
    block = model.config.block_size
    device = model.parameters()[0].device
    was_training = model.training
    model.eval()
    with no_grad():
        for _ in range(length):
            context = np.asarray(out[-block:], dtype=np.int64)[None, :]  # (1, T)
            logits = model(Tensor(context, device=device))[0, -1].numpy()  # (V,): one row back
            out.append(sample_logits(logits, temperature, top_k, rng))
    model.train(was_training)
    return np.asarray(out, dtype=np.int64)


def sample_logits(logits: np.ndarray, temperature: float, top_k: int,
                  rng: np.random.Generator) -> int:
    """One id drawn from softmax(logits / temperature), keeping the top_k likeliest (0 = all)."""
    z = np.asarray(logits, dtype=np.float64) / temperature  # (V,)
    if 0 < top_k < z.size:
        z = np.where(z < np.partition(z, -top_k)[-top_k], -np.inf, z)
    p = np.exp(z - z.max())
    return int(rng.choice(z.size, p=p / p.sum()))


__all__ = ["GPT", "GPTConfig", "configure_optimizers", "generate", "sample_logits"]
