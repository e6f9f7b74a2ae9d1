"""The sweep's models in PyTorch eager, size for size the same as `tinygrad_lab.models`: MLP
(Linear + ReLU), CNN (conv 3x3 + ReLU + max-pool 2 stages, dense, classifier) and GPT (token +
learned position embeddings, pre-LN blocks with a fused qkv Linear and
`F.scaled_dot_product_attention(is_causal=True)`, GELU (tanh) MLP, final LayerNorm, untied head),
as benchmarks/gpt_workload.py and cnn_workload.py write them. Imported only in a PyTorch child.

Shape letters: B batch, T context, C model width.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def mlp(config: dict[str, Any]) -> nn.Module:
    layers: list[nn.Module] = []
    previous = config["inputs"]
    for width in config["hidden"]:
        layers += [nn.Linear(previous, width), nn.ReLU()]
        previous = width
    return nn.Sequential(*layers, nn.Linear(previous, config["classes"]))


def cnn(config: dict[str, Any]) -> nn.Module:
    layers: list[nn.Module] = []
    previous, side, k = config["in_channels"], config["image"], config.get("kernel_size", 3)
    for width in config["channels"]:  # (B, previous, s, s) -> (B, width, s', s')
        layers += [nn.Conv2d(previous, width, k), nn.ReLU(), nn.MaxPool2d(2)]
        previous, side = width, (side - k + 1) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(previous * side * side,
                                                          config["hidden"]),
                         nn.ReLU(), nn.Linear(config["hidden"], config["classes"]))


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(approximate="tanh"),
                                 nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)  # (B, T, C) each
        q, k, v = (a.view(b, t, self.heads, c // self.heads).transpose(1, 2) for a in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        c = config
        self.wte = nn.Embedding(c["vocab_size"], c["d_model"])
        self.wpe = nn.Embedding(c["block_size"], c["d_model"])
        self.blocks = nn.Sequential(*[Block(c["d_model"], c["num_heads"], c["d_ff"])
                                      for _ in range(c["num_layers"])])
        self.ln_f = nn.LayerNorm(c["d_model"])
        self.head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        return self.head(self.ln_f(self.blocks(x)))  # (B, T, V)


def build_model(family: str, config: dict[str, Any]) -> nn.Module:
    if family == "mlp":
        return mlp(config)
    if family == "cnn":
        return cnn(config)
    if family == "gpt":
        return GPT(config)
    raise ValueError(f"unknown family {family!r}")


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


__all__ = ["GPT", "Block", "build_model", "cnn", "loss", "mlp"]
