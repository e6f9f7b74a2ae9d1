"""Function: the base of every differentiable op, and the grad-mode switch.

An op subclasses Function and writes `forward(ctx, *arrays)` and `backward(ctx, grad)` over raw
arrays. `Function.apply` does the bookkeeping: it builds the node (`Ctx`) that links the output to
its inputs, records only what backward needs, and undoes broadcasting of the returned gradients.
No op maths lives here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tinygrad_lab import helpers
from tinygrad_lab.backends import Array, Backend

if TYPE_CHECKING:
    from tinygrad_lab.tensor import Tensor

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Build no graph inside the block (evaluation, optimizer steps)."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = True
    try:
        yield
    finally:
        _grad_enabled = previous


class Ctx:
    """One node of the tape: the op, its inputs, and what its forward saved for backward."""

    __slots__ = ("fn", "parents", "saved", "needs_input_grad", "backend", "recording")

    def __init__(self, backend: Backend, recording: bool) -> None:
        self.backend = backend
        self.recording = recording
        self.saved: tuple[Any, ...] = ()
        self.needs_input_grad: tuple[bool, ...] = ()
        self.fn: Function | None = None
        self.parents: tuple[Tensor, ...] = ()

    @property
    def xp(self) -> Any:
        return self.backend.xp

    def call(self, name: str, *args: Any, **kw: Any) -> Any:
        """Run the named array function: the kernel where one is enabled, else the reference."""
        return self.backend.call(name, *args, **kw)

    def save(self, *values: Any) -> None:
        """Keep values for backward; a no-op when no gradient will be asked of this node."""
        if self.recording:
            self.saved = values

    def saved_bytes(self) -> int:
        return sum(int(getattr(v, "nbytes", 0)) for v in self.saved)


class Function:
    """Base of every op. Keyword parameters (axis, shape, ...) become attributes of the instance."""

    def __init__(self, **params: Any) -> None:
        self.__dict__.update(params)

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, ctx: Ctx, *arrays: Array) -> Array:
        raise NotImplementedError

    def backward(self, ctx: Ctx, grad: Array) -> tuple[Array | None, ...]:
        raise NotImplementedError(f"{self.name} has no backward")

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        from tinygrad_lab.tensor import Tensor

        fn = cls(**params)
        first = inputs[0]
        backend = first._backend
        for t in inputs[1:]:
            if t._backend is not backend:
                raise RuntimeError(
                    f"{cls.__name__}: inputs on different devices ({first.device!r} and "
                    f"{t.device!r}); move them with .to(device) first"
                )
        needs = tuple(t.requires_grad for t in inputs) if _grad_enabled else ()
        recording = any(needs)
        ctx = Ctx(backend, recording)
        if helpers.DEBUG >= 2 or _profiler is not None:
            start = time.perf_counter()
            out = fn.forward(ctx, *[t.data for t in inputs])
            backend.synchronize()
            _record(fn, "forward", time.perf_counter() - start, inputs, out, ctx)
        else:
            out = fn.forward(ctx, *[t.data for t in inputs])
        result = Tensor._wrap(out, backend, first.device, recording)
        if recording:
            ctx.fn = fn
            ctx.parents = inputs
            ctx.needs_input_grad = needs
            result._ctx = ctx
        return result


# --- per-op profiling (DEBUG>=2 prints, tl.profile() collects) ------------------------------
_profiler: list[dict[str, Any]] | None = None


def _record(fn: Function, phase: str, seconds: float, inputs: Any, out: Any, ctx: Ctx) -> None:
    shapes = [tuple(t.shape) for t in inputs] if inputs is not None else []
    out_shape = tuple(getattr(out, "shape", ()))
    entry = {
        "op": fn.name,
        "phase": phase,
        "ms": seconds * 1e3,
        "in_shapes": shapes,
        "out_shape": out_shape,
        "out_bytes": int(getattr(out, "nbytes", 0)),
        "saved_bytes": ctx.saved_bytes(),
    }
    if _profiler is not None:
        _profiler.append(entry)
    if helpers.DEBUG >= 2:
        extra = f" saved={entry['saved_bytes']}B" if helpers.DEBUG >= 3 else ""
        helpers.log(f"{phase:<8} {fn.name:<16} {shapes} -> {out_shape} {entry['ms']:.3f} ms{extra}")


def timed_backward(ctx: Ctx, grad: Array) -> tuple[Array | None, ...]:
    """Run a node's backward, recording its time when profiling or DEBUG>=2."""
    assert ctx.fn is not None
    if helpers.DEBUG >= 2 or _profiler is not None:
        start = time.perf_counter()
        grads = ctx.fn.backward(ctx, grad)
        ctx.backend.synchronize()
        _record(ctx.fn, "backward", time.perf_counter() - start, ctx.parents, grad, ctx)
        return grads
    return ctx.fn.backward(ctx, grad)


@contextlib.contextmanager
def profile() -> Iterator[list[dict[str, Any]]]:
    """Collect one record per op forward and backward: `with tl.profile() as records: ...`."""
    global _profiler
    previous = _profiler
    records: list[dict[str, Any]] = []
    _profiler = records
    try:
        yield records
    finally:
        _profiler = previous
