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


class Function:
    """Base of every op, and the node of the tape.

    One instance per op call. Keyword parameters (axis, shape, ...) become attributes; the same
    object is passed to forward/backward as `ctx` (what they save, the backend, which inputs
    need gradients), so building a node costs one object, not two.
    """

    backend: Backend
    recording: bool
    saved: tuple[Any, ...] | None
    parents: tuple[Tensor, ...]
    needs_input_grad: tuple[bool, ...]

    def __init__(self, **params: Any) -> None:
        self.__dict__.update(params)

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- what forward/backward use through `ctx` ------------------------------------------
    @property
    def xp(self) -> Any:
        """The backend's array module (numpy or cupy)."""
        return self.backend.xp

    def call(self, name: str, *args: Any, **kw: Any) -> Any:
        """Run the named array function: the kernel where one is enabled, else the reference."""
        return self.backend.call(name, *args, **kw)

    def save(self, *values: Any) -> None:
        """Keep values for backward; a no-op when no gradient will be asked of this node."""
        if self.recording:
            self.saved = values

    def saved_bytes(self) -> int:
        return sum(int(getattr(v, "nbytes", 0)) for v in self.saved or ())

    def flops(self, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> int:
        """Floating-point operations of forward (backward is counted as twice that by
        convention); one per output element unless an op knows better (matmul does)."""
        size = 1
        for s in out_shape:
            size *= s
        return size

    # --- the maths, written by each op ----------------------------------------------------
    def forward(self, ctx: Ctx, *arrays: Array) -> Array:
        raise NotImplementedError

    def backward(self, ctx: Ctx, grad: Array) -> tuple[Array | None, ...]:
        raise NotImplementedError(f"{self.name} has no backward")

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        """Run forward on the inputs' arrays and, when a gradient may be needed, link the node."""
        fn = cls.__new__(cls)
        if params:
            fn.__dict__.update(params)
        first = inputs[0]
        backend = first._backend
        recording = False
        for t in inputs:
            if t._backend is not backend:
                raise RuntimeError(
                    f"{cls.__name__}: inputs on different devices ({first.device!r} and "
                    f"{t.device!r}); move them with .to(device) first"
                )
            recording = recording or t.requires_grad
        recording = recording and _grad_enabled
        fn.backend = backend
        fn.recording = recording
        fn.saved = ()
        # known before forward, so an op can skip saving what no gradient will need
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs) if recording else ()
        if _observed:
            start = time.perf_counter()
            out = fn.forward(fn, *[t.data for t in inputs])
            backend.synchronize()
            _record(fn, "forward", time.perf_counter() - start, inputs, out)
        elif len(inputs) == 1:
            out = fn.forward(fn, first.data)
        elif len(inputs) == 2:
            out = fn.forward(fn, first.data, inputs[1].data)
        else:
            out = fn.forward(fn, *[t.data for t in inputs])
        result = _wrap(out, backend, first._device, recording)
        if recording:
            fn.parents = inputs
            result._ctx = fn
        return result


Ctx = Function
"""What forward/backward receive as `ctx`: the node itself (see Function)."""


# --- per-op profiling (DEBUG>=2 prints, tl.profile() collects) ------------------------------
_profiler: list[dict[str, Any]] | None = None
_observed: bool = helpers.DEBUG >= 2
"""True when each op must be timed (DEBUG>=2 or inside tl.profile()); checked once per op."""

_wrap: Any = None
"""Tensor._wrap, installed by tinygrad_lab.tensor (which imports this module first)."""


def _record(fn: Function, phase: str, seconds: float, inputs: Any, out: Any) -> None:
    shapes = [tuple(t.shape) for t in inputs] if inputs is not None else []
    out_shape = tuple(getattr(out, "shape", ()))
    entry = {
        "op": fn.name,
        "phase": phase,
        "ms": seconds * 1e3,
        "in_shapes": shapes,
        "out_shape": out_shape,
        "out_bytes": int(getattr(out, "nbytes", 0)),
        "saved_bytes": fn.saved_bytes(),
        "flops": fn.flops(shapes, out_shape) * (2 if phase == "backward" else 1),
    }
    if _profiler is not None:
        _profiler.append(entry)
    if helpers.DEBUG >= 2:
        extra = f" saved={entry['saved_bytes']}B" if helpers.DEBUG >= 3 else ""
        helpers.log(f"{phase:<8} {fn.name:<16} {shapes} -> {out_shape} {entry['ms']:.3f} ms{extra}")


def timed_backward(ctx: Function, grad: Array) -> tuple[Array | None, ...]:
    """Run a node's backward, recording its time when profiling or DEBUG>=2."""
    if _observed:
        start = time.perf_counter()
        grads = ctx.backward(ctx, grad)
        ctx.backend.synchronize()
        _record(ctx, "backward", time.perf_counter() - start, ctx.parents, grad)
        return grads
    return ctx.backward(ctx, grad)


def summarize(records: list[dict[str, Any]]) -> str:
    """A table of profile records grouped by (op, phase): calls, total ms, share, GFLOP/s."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["op"], r["phase"]), []).append(r)
    total_ms = sum(r["ms"] for r in records) or 1.0
    rows = [f"{'op':<24}{'phase':<10}{'calls':>6}{'ms':>10}{'share':>8}{'GFLOP/s':>10}"]
    for (op, phase), rs in sorted(groups.items(), key=lambda kv: -sum(r["ms"] for r in kv[1])):
        ms = sum(r["ms"] for r in rs)
        gflops = sum(r["flops"] for r in rs) / (ms * 1e6) if ms > 0 else 0.0
        rows.append(f"{op:<24}{phase:<10}{len(rs):>6}{ms:>10.3f}{100 * ms / total_ms:>7.1f}%"
                    f"{gflops:>10.2f}")
    rows.append(f"{'total':<40}{total_ms:>10.3f}")
    return "\n".join(rows)


@contextlib.contextmanager
def profile() -> Iterator[list[dict[str, Any]]]:
    """Collect one record per op forward and backward: `with tl.profile() as records: ...`."""
    global _profiler, _observed
    previous = _profiler
    records: list[dict[str, Any]] = []
    _profiler = records
    _observed = True
    try:
        yield records
    finally:
        _profiler = previous
        _observed = previous is not None or helpers.DEBUG >= 2
