"""Module hooks, as PyTorch names them: see (or change) what a layer receives, returns, and what
gradient flows back through it, without editing the layer. Interpretability (tl.explain) and
debugging are built on them.

- forward pre-hook `hook(module, args)`: before forward; may return new args (a tuple).
- forward hook `hook(module, args, output)`: after forward; may return a new output.
- full backward hook `hook(module, grad_input, grad_output)`: once the gradients with respect to
  the module's tensor inputs are known; may return new grad_input (a tuple, one per input).

How the backward hook sees both sides: the tensor inputs that need a gradient pass through one
identity node before forward, and the outputs through another after it. Backward reaches the
output node first (it records grad_output), then the input node, which calls the hook with its
gradients and passes on what the hook returns. An input node is one node with many outputs
(Function.apply_many), so the hook runs once per call with every input's gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING, Any

from tinygrad_lab.backends import Array
from tinygrad_lab.function import Function, is_grad_enabled
from tinygrad_lab.tensor import Tensor

if TYPE_CHECKING:
    from tinygrad_lab.nn.module import Module

_ids = count()


class RemovableHandle:
    """What register_*_hook returns: `handle.remove()` takes the hook off again."""

    def __init__(self, hooks: dict[int, Callable[..., Any]]) -> None:
        self._hooks, self.id = hooks, next(_ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def add_hook(module: Module, kind: str, hook: Callable[..., Any]) -> RemovableHandle:
    if not callable(hook):
        raise TypeError(f"register_{kind}: hook must be callable, got {type(hook).__name__}")
    hooks = module.__dict__.setdefault(f"_{kind}s", {})
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


class _Call:
    """One forward call's backward-hook state: the output gradients, once they arrive."""

    def __init__(self, module: Module, hooks: list[Callable[..., Any]], n_inputs: int) -> None:
        self.module, self.hooks, self.n_inputs = module, hooks, n_inputs
        self.grad_output: tuple[Any, ...] | None = None
        self.pending_inputs = False

    def run(self, grad_input: tuple[Any, ...]) -> tuple[Any, ...]:
        grad_output = self.grad_output if self.grad_output is not None else ()
        for hook in self.hooks:
            result = hook(self.module, grad_input, grad_output)
            if result is not None:
                result = tuple(result)
                if len(result) != len(grad_input):
                    raise ValueError(f"backward hook returned {len(result)} gradients for "
                                     f"{len(grad_input)} inputs")
                grad_input = tuple(_array(g) for g in result)
        return grad_input


def _array(g: Any) -> Any:
    return g.data if isinstance(g, Tensor) else g


def _tensors(value: Any) -> tuple[Tensor, ...]:
    return (value,) if isinstance(value, Tensor) else tuple(
        v for v in value if isinstance(v, Tensor)) if isinstance(value, (tuple, list)) else ()


class _HookInputs(Function):
    """Identity on the module's inputs; backward hands their gradients to the hook."""

    call_state: _Call
    flops_per_element = (0, 0)

    def forward(self, *xs: Array) -> list[Array]:
        return list(xs)

    def backward(self, grads: list[Array | None]) -> tuple[Array | None, ...]:
        return self.call_state.run(tuple(grads))


class _HookOutputs(Function):
    """Identity on the module's outputs; backward records grad_output (and calls the hook
    itself when no input needs a gradient, so it still runs, with grad_input all None)."""

    call_state: _Call
    flops_per_element = (0, 0)

    def forward(self, *ys: Array) -> list[Array]:
        return list(ys)

    def backward(self, grads: list[Array | None]) -> tuple[Array | None, ...]:
        state = self.call_state
        state.grad_output = tuple(grads)
        if not state.pending_inputs:
            state.run((None,) * state.n_inputs)
        return tuple(grads)


def call_with_hooks(module: Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kw: dict[str, Any]) -> Any:
    """Module.__call__ when the module has hooks: pre-hooks, forward, forward hooks, and the
    identity nodes of the backward hooks around the call."""
    for hook in list(module.__dict__.get("_forward_pre_hooks", {}).values()):
        result = hook(module, args)
        if result is not None:
            args = result if isinstance(result, tuple) else (result,)
    backward_hooks = list(module.__dict__.get("_full_backward_hooks", {}).values())
    state = None
    if backward_hooks and is_grad_enabled():
        positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        state = _Call(module, backward_hooks, len(positions))
        needing = [i for i in positions if args[i].requires_grad]
        if needing:
            state.pending_inputs = True
            wrapped = _HookInputs.apply_many(*[args[i] for i in needing], call_state=state)
            args = list(args)  # type: ignore[assignment]
            for i, t in zip(needing, wrapped):
                args[i] = t  # type: ignore[index]
            args = tuple(args)
            if len(needing) < len(positions):  # report None for inputs without a gradient
                state.run = _padded(state.run, positions, needing)  # type: ignore[method-assign]
    output = forward(*args, **kw)
    for hook in list(module.__dict__.get("_forward_hooks", {}).values()):
        result = hook(module, args, output)
        if result is not None:
            output = result
    if state is not None:
        outs = _tensors(output)
        if outs and any(t.requires_grad for t in outs):
            wrapped = _HookOutputs.apply_many(*outs, call_state=state)
            output = wrapped[0] if isinstance(output, Tensor) else _replace(output, wrapped)
    return output


def _padded(run: Callable[[tuple[Any, ...]], tuple[Any, ...]], positions: list[int],
            needing: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """The hook sees one gradient per tensor input (None where none is needed); the node gets
    back the ones it passes on."""
    def run_padded(grads: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(grads) == len(positions):  # called from the output node: all None already
            return run(grads)
        by_position = dict(zip(needing, grads))
        full = run(tuple(by_position.get(i) for i in positions))
        return tuple(full[positions.index(i)] for i in needing)

    return run_padded


def _replace(output: tuple[Any, ...] | list[Any], wrapped: list[Tensor]) -> Any:
    it = iter(wrapped)
    items = [next(it) if isinstance(v, Tensor) else v for v in output]
    return type(output)(items)
