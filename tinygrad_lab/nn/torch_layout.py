"""Loading PyTorch weights: the map from a torch state_dict's names and layouts to ours.

Most layers store their parameters exactly as PyTorch does (Conv1d/Conv2d (O, C/G, K...),
ConvTranspose2d (C, O/G, KH, KW), the norms, Embedding). Three store them differently, for a
reason (one GEMM without a transpose on the hot path):

- Linear keeps weight (in, out), torch (out, in): transposed on load.
- RNN / LSTM / GRU keep weight_ih_l{k} / weight_hh_l{k} transposed the same way; gate order
  (LSTM i, f, g, o; GRU r, z, n) and the two biases are torch's, so they load as they are.
- MultiHeadAttention packs q, k, v into qkv.weight (C, 3C) = torch's in_proj_weight.T
  (in_proj_bias as it is), and proj.weight = out_proj.weight.T.

Names differ in two places: Sequential's children are `layers.{i}` here and `{i}` in torch, and
TransformerBlock's (ln1, attn, ln2, fc, fc_out) are torch.nn.TransformerEncoderLayer's (norm1,
self_attn, norm2, linear1, linear2) (the pre-norm `norm_first=True`, batch_first layer).

A torch key nobody asks for, or one of ours that torch's state lacks, is an error naming it;
the `num_batches_tracked` counter of BatchNorm (and of InstanceNorm with running stats) has no
counterpart here and is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tinygrad_lab.nn.attention import MultiHeadAttention, TransformerBlock
from tinygrad_lab.nn.conv import _BatchNorm
from tinygrad_lab.nn.layers import Linear, Sequential
from tinygrad_lab.nn.module import Module
from tinygrad_lab.nn.norm import _InstanceNorm
from tinygrad_lab.nn.recurrent import RNNBase
from tinygrad_lab.tensor import Tensor

Transform = Callable[[np.ndarray], np.ndarray] | None
Plan = dict[str, tuple[str, Transform]]  # our name -> (torch name, torch array -> ours)

_CHILD_NAMES: dict[type, dict[str, str]] = {
    TransformerBlock: {"ln1": "norm1", "attn": "self_attn", "ln2": "norm2", "fc": "linear1",
                       "fc_out": "linear2"},
}
_IGNORED_SUFFIXES: dict[type, tuple[str, ...]] = {_BatchNorm: ("num_batches_tracked",),
                                                  _InstanceNorm: ("num_batches_tracked",)}


def _transpose(a: np.ndarray) -> np.ndarray:
    return a.T


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any device, requires_grad or not), a Tensor or an array -> a NumPy array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, torch not imported
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return value.numpy()
    return np.asarray(value)


def is_torch_state(state: Mapping[str, Any]) -> bool:
    """True when the values are torch tensors (the sign of a torch state_dict)."""
    return any(type(v).__module__.startswith("torch") for v in state.values())


def _plan(module: Module, ours: str, theirs: str, plan: Plan, ignorable: list[str],
          seen: set[int]) -> None:
    """Fill `plan` with where each of module's parameters and persistent buffers comes from.
    A parameter shared by two modules loads once (torch's state lists it under both names)."""
    if isinstance(module, MultiHeadAttention):
        plan[ours + "qkv.weight"] = (theirs + "in_proj_weight", _transpose)
        plan[ours + "proj.weight"] = (theirs + "out_proj.weight", _transpose)
        if module.qkv.bias is not None:
            plan[ours + "qkv.bias"] = (theirs + "in_proj_bias", None)
            plan[ours + "proj.bias"] = (theirs + "out_proj.bias", None)
        return
    skip = module.__dict__.get("_non_persistent", set())
    own = list(module._own_parameters())
    own += [(n, b) for n, b in module.__dict__.get("_buffers", {}).items() if n not in skip]
    for name, tensor in own:
        if id(tensor) in seen:
            ignorable.append(theirs + name)
            continue
        seen.add(id(tensor))
        transposed = (isinstance(module, Linear) and name == "weight") or (
            isinstance(module, RNNBase) and name.startswith("weight_"))
        plan[ours + name] = (theirs + name, _transpose if transposed else None)
    for kind, suffixes in _IGNORED_SUFFIXES.items():
        if isinstance(module, kind):
            ignorable += [theirs + s for s in suffixes]
    renames = next((r for kind, r in _CHILD_NAMES.items() if isinstance(module, kind)), {})
    for name, child in module.children():
        torch_name = renames.get(name, name)
        if isinstance(module, Sequential) and name.startswith("layers."):
            torch_name = name[len("layers."):]
        _plan(child, f"{ours}{name}.", f"{theirs}{torch_name}.", plan, ignorable, seen)


def convert_state(module: Module, state: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """torch's state_dict (torch tensors or arrays) for a model built like `module` -> a state in
    our names and layouts, ready for `module.load_state_dict(..., layout="ours")`.

    Raises KeyError naming every torch key the model lacks and every key of ours torch's state
    lacks (with strict=False, those are left out instead)."""
    plan: Plan = {}
    ignorable: list[str] = []
    _plan(module, "", "", plan, ignorable, set())
    wanted = {torch_name for torch_name, _ in plan.values()}
    missing = sorted(f"{t} (for {o})" for o, (t, _) in plan.items() if t not in state)
    unexpected = sorted(k for k in state if k not in wanted and k not in ignorable)
    if strict and (missing or unexpected):
        raise KeyError(f"load_state_dict(layout='torch'): missing torch keys {missing}, "
                       f"unexpected torch keys {unexpected}")
    out: dict[str, Any] = {}
    for ours, (theirs, transform) in plan.items():
        if theirs in state:
            value = to_numpy(state[theirs])
            out[ours] = transform(value) if transform is not None else value
    return out


def from_torch(module: Module, torch_source: Any, strict: bool = True) -> Module:
    """Load a torch.nn.Module's weights (or its state_dict) into `module`, built with the same
    structure, and return `module`.

    >>> ours = from_torch(nn.Linear(4, 3), torch.nn.Linear(4, 3))  # weight loaded transposed
    """
    state = torch_source.state_dict() if hasattr(torch_source, "state_dict") else torch_source
    if not isinstance(state, Mapping):
        raise TypeError(f"from_torch: expected a torch module or a state_dict mapping, got "
                        f"{type(torch_source).__name__}")
    module.load_state_dict(dict(state), strict=strict, layout="torch")
    return module


def prepare(module: Module, state: Mapping[str, Any], strict: bool,
            layout: str | None) -> Mapping[str, Any]:
    """What Module.load_state_dict loads for `layout`: "ours" as given, "torch" converted;
    None is "ours" but refuses torch tensors, whose square Linear weights would load silently
    transposed."""
    if layout == "torch":
        return convert_state(module, state, strict)
    if layout is None and is_torch_state(state):
        raise ValueError("load_state_dict: the state holds torch tensors; pass layout='torch' "
                         "to map torch's names and (out, in) weights to ours, or layout='ours' "
                         "if they already are in this library's layout")
    if layout not in (None, "ours"):
        raise ValueError(f"load_state_dict: layout must be 'ours' or 'torch', got {layout!r}")
    # a Tensor stays as it is: one on the module's device is then copied there, not via the host
    return {k: v if isinstance(v, Tensor) else to_numpy(v) for k, v in state.items()}


def shape_hint(state_shape: tuple[int, ...], our_shape: tuple[int, ...]) -> str:
    """The layout hint for a shape mismatch: a 2-D weight that fits transposed is torch's."""
    if len(state_shape) == 2 and tuple(state_shape[::-1]) == tuple(our_shape):
        return " (looks like torch's (out, in) layout: pass layout='torch')"
    return ""
