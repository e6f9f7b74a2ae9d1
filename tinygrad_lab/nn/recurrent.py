"""Recurrent layers: RNN (tanh or relu), LSTM and GRU, with PyTorch's semantics and shapes.

Shape letters: T time steps, B batch, I input features, H hidden features, L layers, G gates
(RNN 1, GRU 3, LSTM 4).

Built from Tensor ops only, so autograd does backpropagation through time. Per layer, the input
projection of all T steps is one fused linear node, a single large matmul:

    gx = x @ weight_ih + bias_ih            x (T, B, I) -> gx (T, B, G*H)

and only the recurrent part runs step by step: gh = h @ weight_hh + bias_hh, (B, H) -> (B, G*H).
`gx.unbind(0)` hands out the T steps and `chunk` each step's gates, both as one node whose
backward fills one buffer (T GetItem slices would make backward O(T^2): see ops/split.py).

Cells, PyTorch's formulas and gate order (gates stacked along the last axis):

    RNN:  h' = tanh(gx + gh)                                      (relu with nonlinearity="relu")
    LSTM: i, f, g, o = chunks of gx + gh;  c' = s(f) c + s(i) tanh(g);  h' = s(o) tanh(c')
    GRU:  r = s(gx_r + gh_r);  z = s(gx_z + gh_z);  n = tanh(gx_n + r * gh_n);  h' = (1 - z) n + z h

with s the sigmoid. In the GRU, gh_n = h @ W_hn + b_hn keeps its bias inside r * (...), which is
why the two biases are separate parameters.

Parameters per layer k, named as in PyTorch but stored (in, out) like Linear, i.e. transposed:
weight_ih_l{k} (I or H, G*H) is torch's weight_ih_l{k}.T, weight_hh_l{k} (H, G*H) is torch's
weight_hh_l{k}.T; bias_ih_l{k}, bias_hh_l{k} (G*H,) are the same. All start U(-1/sqrt(H),
1/sqrt(H)), as in PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.nn import init
from tinygrad_lab.nn.layers import linear
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.tensor import Tensor, stack

State = tuple[Tensor, ...]  # one layer's state: (h,) or, for the LSTM, (h, c); each (B, H)


class RNNBase(Module):
    """The layer loop shared by RNN, LSTM and GRU; subclasses define `gates` and `step`."""

    gates: int = 1
    state_names: tuple[str, ...] = ("h0",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dtype: Any = np.float32) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 1, got {value}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        width = self.gates * hidden_size  # G*H

        def uniform(shape: tuple[int, ...]) -> Parameter:  # U(-1/sqrt(H), 1/sqrt(H))
            return Parameter(init.fan_in_uniform(hidden_size, width, shape, dtype))

        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", uniform((fan_in, width)))
            setattr(self, f"weight_hh_l{k}", uniform((hidden_size, width)))
            if bias:
                setattr(self, f"bias_ih_l{k}", uniform((width,)))
                setattr(self, f"bias_hh_l{k}", uniform((width,)))

    def layer_parameters(self, k: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of layer k; biases None when bias=False."""
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}", None), getattr(self, f"bias_hh_l{k}", None))

    def step(self, gx: Tensor, state: State, weight_hh: Tensor,
             bias_hh: Tensor | None) -> State:
        """One time step: gx (B, G*H) the input projection, state (B, H) each -> new state."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """x (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched.

        state: None (zeros) or h0 (L, B, H) ((L, H) unbatched); for the LSTM a pair (h0, c0).
        Returns (output, h_n), for the LSTM (output, (h_n, c_n)): output (T, B, H) ((B, T, H)
        with batch_first, (T, H) unbatched) holds the last layer's h at every step; h_n and c_n
        (L, B, H) the final state of every layer.
        """
        name = type(self).__name__
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            layout = "B, T" if self.batch_first else "T, B"
            raise ValueError(f"{name}: expected input ({layout}, {self.input_size}) or "
                             f"(T, {self.input_size}), got shape {x.shape}")
        batched = x.ndim == 3
        if not batched:
            x = x.unsqueeze(1)  # (T, 1, I)
        elif self.batch_first:
            x = x.transpose(0, 1)  # (B, T, I) -> (T, B, I)
        steps, batch = x.shape[:2]
        if steps == 0:
            raise ValueError(f"{name}: the input has no time steps (shape {x.shape})")
        states = self._initial_states(state, batch, batched, x)  # L states of (B, H) tensors

        finals: list[State] = []
        for k in range(self.num_layers):
            weight_ih, weight_hh, bias_ih, bias_hh = self.layer_parameters(k)
            gx = linear(x, weight_ih, bias_ih)  # (T, B, G*H): every step's projection at once
            s = states[k]
            outputs = []
            for gx_t in gx.unbind(0):  # T tensors (B, G*H)
                s = self.step(gx_t, s, weight_hh, bias_hh)
                outputs.append(s[0])
            x = stack(outputs)  # (T, B, H): this layer's h at every step, the next layer's input
            finals.append(s)

        output = x
        if not batched:
            output = output.squeeze(1)  # (T, H)
        elif self.batch_first:
            output = output.transpose(0, 1)  # (B, T, H)
        final = []
        for i in range(len(self.state_names)):
            last = stack([s[i] for s in finals])  # (L, B, H)
            final.append(last if batched else last.squeeze(1))  # (L, H) unbatched
        return output, (final[0] if len(final) == 1 else tuple(final))

    def _initial_states(self, state: Any, batch: int, batched: bool, x: Tensor) -> list[State]:
        """The initial state of each layer as (B, H) tensors: zeros, or slices of h0 (and c0)."""
        name, names = type(self).__name__, self.state_names
        if state is None:
            zero = Tensor.zeros(batch, self.hidden_size, dtype=x.dtype, device=x.device)
            return [(zero,) * len(names) for _ in range(self.num_layers)]
        given = (state,) if len(names) == 1 else state
        if not isinstance(given, (tuple, list)) or len(given) != len(names):
            raise TypeError(f"{name}: the initial state must be {' and '.join(names)}, "
                            f"got {type(state).__name__}")
        expected = (self.num_layers, batch, self.hidden_size) if batched else (
            self.num_layers, self.hidden_size)
        per_tensor = []
        for label, t in zip(names, given):
            t = t if isinstance(t, Tensor) else Tensor(np.asarray(t), device=x.device)
            if t.shape != expected:
                raise ValueError(f"{name}: {label} has shape {t.shape}, expected {expected} "
                                 "(num_layers, batch, hidden_size)")
            if not batched:
                t = t.unsqueeze(1)  # (L, 1, H)
            per_tensor.append(t.unbind(0))  # L tensors (B, H)
        return [tuple(layer) for layer in zip(*per_tensor)]

    def extra_repr(self) -> str:
        extra = f", num_layers={self.num_layers}" if self.num_layers != 1 else ""
        extra += ", bias=False" if not self.bias else ""
        extra += ", batch_first=True" if self.batch_first else ""
        return f"{self.input_size}, {self.hidden_size}{extra}"


class RNN(RNNBase):
    """Elman RNN: h' = tanh(x W_ih + b_ih + h W_hh + b_hh) (or relu), as torch.nn.RNN."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dtype: Any = np.float32) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dtype)
        self.nonlinearity = nonlinearity

    def step(self, gx: Tensor, state: State, weight_hh: Tensor,
             bias_hh: Tensor | None) -> State:
        (h,) = state
        pre = gx + linear(h, weight_hh, bias_hh)  # (B, H)
        return (pre.tanh() if self.nonlinearity == "tanh" else pre.relu(),)


class LSTM(RNNBase):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), gates i, f, g, o as torch.nn.LSTM.

    >>> lstm = LSTM(32, 64, num_layers=2); out, (h_n, c_n) = lstm(x)  # x (T, B, 32)
    """

    gates = 4
    state_names = ("h0", "c0")

    def step(self, gx: Tensor, state: State, weight_hh: Tensor,
             bias_hh: Tensor | None) -> State:
        h, c = state  # (B, H) each
        gates = gx + linear(h, weight_hh, bias_hh)  # (B, 4H)
        i, f, g, o = gates.chunk(4, axis=-1)  # (B, H) each
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        return h, c


class GRU(RNNBase):
    """Gated recurrent unit (Cho et al. 2014), gates r, z, n as torch.nn.GRU."""

    gates = 3

    def step(self, gx: Tensor, state: State, weight_hh: Tensor,
             bias_hh: Tensor | None) -> State:
        (h,) = state  # (B, H)
        gh = linear(h, weight_hh, bias_hh)  # (B, 3H)
        x_r, x_z, x_n = gx.chunk(3, axis=-1)  # (B, H) each
        h_r, h_z, h_n = gh.chunk(3, axis=-1)  # (B, H) each
        r = (x_r + h_r).sigmoid()
        z = (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
        return (n + z * (h - n),)  # = (1 - z) * n + z * h, one op fewer
