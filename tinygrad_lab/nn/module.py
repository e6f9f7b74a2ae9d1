"""Module: a layer that owns parameters and buffers, and Parameter, the tensors it trains."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tinygrad_lab import function as _function
from tinygrad_lab.backends import DEFAULT_DEVICE
from tinygrad_lab.tensor import Tensor


class Parameter(Tensor):
    """A tensor a Module trains: always requires grad, found by `Module.parameters()`."""

    __slots__ = ()

    def __init__(self, data: Any, device: str = DEFAULT_DEVICE) -> None:
        super().__init__(data, requires_grad=True, device=device)
        if _function._memory is not None:
            _function._memory.add(self.data, "parameters", self._device)


class Module:
    """Base of every layer: attribute Parameters, Modules and registered buffers form the tree."""

    training: bool = True

    def __init__(self) -> None:
        self.training = True
        self._buffers: dict[str, Tensor] = {}
        self._non_persistent: set[str] = set()

    def forward(self, *args: Any, **kw: Any) -> Any:
        raise NotImplementedError

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if self.__dict__.get("_has_hooks"):
            from tinygrad_lab.nn.hooks import call_with_hooks

            return call_with_hooks(self, self._call, args, kw)
        return self._call(*args, **kw)

    def _call(self, *args: Any, **kw: Any) -> Any:
        if _function._memory is not None:  # memory accounting: ops inside belong to this module
            return _function._memory.call_module(self, args, kw)
        return self.forward(*args, **kw)

    # --- hooks (tinygrad_lab/nn/hooks.py) ------------------------------------------------
    def register_forward_pre_hook(self, hook: Any) -> Any:
        """hook(module, args) before forward; returning a tuple replaces the args."""
        return self._add_hook("forward_pre_hook", hook)

    def register_forward_hook(self, hook: Any) -> Any:
        """hook(module, args, output) after forward; returning a value replaces the output."""
        return self._add_hook("forward_hook", hook)

    def register_full_backward_hook(self, hook: Any) -> Any:
        """hook(module, grad_input, grad_output) once the gradients of the module's tensor
        inputs are known (arrays; None where an input needs none); returning a tuple replaces
        grad_input."""
        return self._add_hook("full_backward_hook", hook)

    def _add_hook(self, kind: str, hook: Any) -> Any:
        from tinygrad_lab.nn.hooks import add_hook

        handle = add_hook(self, kind, hook)
        object.__setattr__(self, "_has_hooks", True)
        return handle

    # --- the tree -------------------------------------------------------------------------
    def register_buffer(self, name: str, value: Tensor, persistent: bool = True) -> None:
        """State that is moved with the module but not trained: running stats, or (with
        persistent=False) a table rebuilt by __init__ that state_dict leaves out, as PyTorch."""
        if "_buffers" not in self.__dict__:
            self._buffers = {}
        if "_non_persistent" not in self.__dict__:
            self._non_persistent = set()
        self._buffers[name] = value
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            buffers[name] = value
        object.__setattr__(self, name, value)

    def children(self) -> Iterator[tuple[str, Module]]:
        for name, value in self.__dict__.items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for name, p in self._named(prefix, lambda m: m._own_parameters()):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(
        self, prefix: str = "", persistent_only: bool = False
    ) -> Iterator[tuple[str, Tensor]]:
        def own(m: Module) -> Iterator[tuple[str, Tensor]]:
            skip = m.__dict__.get("_non_persistent", set()) if persistent_only else set()
            return ((n, b) for n, b in m.__dict__.get("_buffers", {}).items() if n not in skip)

        yield from self._named(prefix, own)

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name, value in self.__dict__.items():
            if isinstance(value, Parameter):
                yield name, value

    def _named(self, prefix: str, own: Any) -> Iterator[tuple[str, Any]]:
        for name, value in own(self):
            yield prefix + name, value
        for name, child in self.children():
            yield from child._named(f"{prefix}{name}.", own)

    def modules(self) -> Iterator[Module]:
        yield self
        for _, child in self.children():
            yield from child.modules()

    # --- modes and gradients ----------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and persistent buffer as NumPy arrays, by dotted name."""
        state = {name: p.numpy().copy() for name, p in self.named_parameters()}
        buffers = self.named_buffers(persistent_only=True)
        state.update({name: b.numpy().copy() for name, b in buffers})
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True,
                        layout: str | None = None) -> None:
        """Copy arrays into the parameters and buffers of the same names and shapes. A state
        without a non-persistent buffer is complete; one with it (written while it was
        persistent) loads it too. layout="torch" loads a torch state_dict (nn/torch_layout.py)."""
        from tinygrad_lab.nn import torch_layout

        state = torch_layout.prepare(self, state, strict, layout)
        targets: dict[str, Tensor] = dict(self.named_parameters())
        targets.update(dict(self.named_buffers(persistent_only=True)))
        missing = sorted(set(targets) - set(state))
        targets.update(dict(self.named_buffers()))
        unexpected = sorted(set(state) - set(targets))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
        for name, tensor in targets.items():
            if name not in state:
                continue
            raw = state[name]
            value = _on_device(raw, tensor._backend)
            if value.shape != tensor.shape:
                raise ValueError(
                    f"load_state_dict: {name} has shape {value.shape} in the state but "
                    f"{tensor.shape} in the module"
                    + torch_layout.shape_hint(value.shape, tensor.shape)
                )
            tensor.data[...] = tensor._backend.asarray(value.astype(tensor.dtype, copy=False))
            tensor._bump_version()

    def to(self, device: str) -> Module:
        """Move every parameter and buffer to `device` in place."""
        from tinygrad_lab.backends import get_backend

        backend = get_backend(device)
        for _, p in self.named_parameters():
            if p._backend is backend:  # already there: no round trip, gradient kept
                continue
            p.data = backend.asarray(p._backend.to_numpy(p.data))
            p._backend, p._device = backend, backend.device
            p.grad = None
            if _function._memory is not None:
                _function._memory.add(p.data, "parameters", p._device)
        for _, b in self.named_buffers():
            if b._backend is backend:
                continue
            b.data = backend.asarray(b._backend.to_numpy(b.data))
            b._backend, b._device = backend, backend.device
        return self

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self.children():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return ("\n".join(lines) + "\n)") if len(lines) > 1 else lines[0] + ")"

    def extra_repr(self) -> str:
        return ""


def _on_device(value: Any, backend: Any) -> Any:
    """A state entry as an array load_state_dict can copy from: a Tensor or device array
    already on `backend` as it is (no round trip through the host), anything else as NumPy."""
    if isinstance(value, Tensor):
        return value.data if value._backend is backend else value.numpy()
    if type(value).__module__.split(".")[0] == "cupy":  # a GPU array: stays on a GPU
        return value if getattr(backend.xp, "__name__", "") == "cupy" else value.get()
    return np.asarray(value)
