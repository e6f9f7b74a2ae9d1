"""FLOP counts: the convention every op's formula follows, and a step's totals from profile records.

Each op states its count next to its maths (`Function.flops_per_element`, or `flops()` /
`backward_flops()` where the count is not per output element). The convention:

- One FLOP per scalar arithmetic operation of the op's formula as written in its docstring:
  add, subtract, multiply, divide, negate, compare, max/min, select (`where`), and one per
  transcendental or special function (exp, log, sqrt, tanh, pow, sign). No op is weighted more
  than another; what NumPy or a kernel does in addition (temporaries, both branches of a
  stable formula) is not counted, so two implementations of one op count the same.
- A multiply-add of a product is 2: matmul and linear are 2*M*N*K, a convolution is
  2*N*O*OH*OW*(C/G)*KH*KW, plus the bias add (1 per output) and the activation's own count.
- Reductions count their input elements (a sum of n numbers is n, not n - 1). Per-row scalars
  (a log, a reciprocal square root per row of a softmax or a layer norm) are left out: they are
  1/C of the row's work.
- Data movement is 0 FLOPs: reshape, permute, expand, slicing, concatenation, padding, casts,
  copies between devices, and the embedding gather. Scatter-adds (embedding and integer-index
  backward, max-pool backward) count one add per gradient element added.
- Backward counts what the op's backward computes for the inputs that need a gradient
  (`needs_input_grad`): matmul backward is one GEMM (2*M*N*K) per such input, a frozen layer's
  weight gradient is not counted. Summing a broadcast gradient back to its input's shape, and
  adding the gradients of a tensor used twice, are the tape's work (Tensor.backward), outside
  any op: they are not counted (and their time is engine overhead, see profiling.py).
- Optimizer updates count their per-element formula times the parameter's elements
  (`Optimizer.update_flops`).

tests/test_flops.py checks every op of tinygrad_lab.ops against counts done by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Shape = tuple[int, ...]


def numel(shape: Iterable[int]) -> int:
    """The number of elements of an array of this shape (1 for a scalar's ())."""
    n = 1
    for s in shape:
        n *= int(s)
    return n


def step_flops(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """FLOPs of a profiled region (`with tl.profile() as records:`) by phase: "forward",
    "backward", "optimizer", and "total" (their sum)."""
    out = {"forward": 0, "backward": 0, "optimizer": 0}
    for r in records:
        out[r["phase"]] = out.get(r["phase"], 0) + int(r["flops"])
    out["total"] = sum(out.values())
    return out
