"""Function: the base of every differentiable op, and the grad-mode switch.

An op subclasses Function and writes `forward(self, *arrays)` and `backward(self, grad)` over raw
arrays, where `self` is the node of the tape (one per call, built by `Function.apply`):

- keyword parameters of `apply` (axis, shape, ...) are attributes of the node;
- `self.xp` is the backend's array module and `self.call(name, ...)` runs a named array
  function (a kernel where one is enabled, else the reference);
- `self.needs_input_grad[i]` says whether input i needs a gradient (all False when nothing is
  recorded), so forward saves, with `self.save(...)`, only what backward needs for those inputs;
- backward reads `self.saved` and returns one gradient per input, None where none is needed.

`Function.apply` links the output to its inputs when a gradient may be needed; Tensor.backward
undoes broadcasting of the returned gradients. No op maths lives here.
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
    """Base of every op, and the node of the tape: one instance per op call (see the module
    docstring). Besides the op's own parameters, a node holds only the attributes below, so
    those names are taken: backend, recording, saved, parents, needs_input_grad, outputs."""

    backend: Backend
    recording: bool
    saved: tuple[Any, ...] | None
    parents: tuple[Tensor, ...]
    needs_input_grad: tuple[bool, ...]
    outputs: int | None = None
    """None for a node made by apply; for one made by apply_many, how many tensors forward
    returned (Tensor.backward then gathers their gradients into one list)."""

    @property
    def name(self) -> str:
        return type(self).__name__

    # --- what forward/backward use ------------------------------------------------------------
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
    def forward(self, *arrays: Array) -> Array:
        raise NotImplementedError

    def backward(self, grad: Array) -> tuple[Array | None, ...]:
        raise NotImplementedError(f"{self.name} has no backward")

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        """Run forward on the inputs' arrays and, when a gradient may be needed, link the node."""
        fn = cls.__new__(cls)
        if params:
            fn.__dict__.update(params)
        first = inputs[0]
        backend = first._backend
        if len(inputs) == 2:  # the common arities spelled out: this runs once per op
            second = inputs[1]
            if second._backend is not backend:
                raise _mixed_devices(cls, first, second)
            needs = (first.requires_grad, second.requires_grad)
        elif len(inputs) == 1:
            needs = (first.requires_grad,)
        else:
            for t in inputs:
                if t._backend is not backend:
                    raise _mixed_devices(cls, first, t)
            needs = tuple([t.requires_grad for t in inputs])
        if _grad_enabled:
            recording = True in needs
        else:
            recording, needs = False, (False,) * len(inputs)
        fn.backend = backend
        fn.recording = recording
        fn.saved = ()
        # known before forward, so an op can skip saving what no gradient will need
        fn.needs_input_grad = needs
        if _observed:
            start = time.perf_counter()
            out = fn.forward(*[t.data for t in inputs])
            backend.synchronize()
            _record(fn, "forward", time.perf_counter() - start, inputs, out)
        elif len(inputs) == 2:
            out = fn.forward(first.data, second.data)
        elif len(inputs) == 1:
            out = fn.forward(first.data)
        else:
            out = fn.forward(*[t.data for t in inputs])
        result = _wrap(out, backend, first._device, recording)
        if recording:
            fn.parents = inputs
            result._ctx = fn
        return result

    @classmethod
    def apply_many(cls, *inputs: Tensor, **params: Any) -> list[Tensor]:
        """apply for an op whose forward returns a list of arrays: one node, one tensor each.

        Its backward gets a list of gradients, one per output (None for an output no gradient
        reached), once: Tensor.backward gathers them first.
        """
        packed = cls.apply(*inputs, **params)  # forward's list, wrapped as one tensor for now
        node = packed._ctx
        outs = [_wrap(a, packed._backend, packed._device, packed.requires_grad)
                for a in packed.data]
        if node is not None:
            node.outputs = len(outs)
            for index, t in enumerate(outs):
                t._ctx, t._output = node, index
        return outs


def _mixed_devices(op: type[Function], first: Tensor, other: Tensor) -> RuntimeError:
    return RuntimeError(
        f"{op.__name__}: inputs on different devices ({first.device!r} and {other.device!r}); "
        "move them with .to(device) first"
    )


# --- per-op profiling (DEBUG>=2 prints, tl.profile() collects) ------------------------------
_profiler: list[dict[str, Any]] | None = None
_observed: bool = helpers.DEBUG >= 2
"""True when each op must be timed (DEBUG>=2 or inside tl.profile()); checked once per op."""

_wrap: Any = None
"""Tensor._wrap, installed by tinygrad_lab.tensor (which imports this module first)."""


def _record(fn: Function, phase: str, seconds: float, inputs: Any, out: Any) -> None:
    shapes = [tuple(t.shape) for t in inputs] if inputs is not None else []
    outs = out if isinstance(out, (list, tuple)) else (out,)  # several for apply_many's ops
    out_shape = tuple(getattr(outs[0], "shape", ())) if outs else ()
    entry = {
        "op": fn.name,
        "phase": phase,
        "ms": seconds * 1e3,
        "in_shapes": shapes,
        "out_shape": out_shape,
        "out_bytes": sum(int(getattr(o, "nbytes", 0)) for o in outs),
        "saved_bytes": fn.saved_bytes(),
        "flops": fn.flops(shapes, out_shape) * (2 if phase == "backward" else 1),
    }
    if _profiler is not None:
        _profiler.append(entry)
    if helpers.DEBUG >= 2:
        extra = f" saved={entry['saved_bytes']}B" if helpers.DEBUG >= 3 else ""
        helpers.log(f"{phase:<8} {fn.name:<16} {shapes} -> {out_shape} {entry['ms']:.3f} ms{extra}")


def timed_backward(node: Function, grad: Any) -> tuple[Array | None, ...]:
    """Run a node's backward, recording its time when profiling or DEBUG>=2. `grad` is the
    output's gradient (a list of them for a node made by apply_many)."""
    if _observed:
        start = time.perf_counter()
        in_grads = node.backward(grad)
        node.backend.synchronize()
        _record(node, "backward", time.perf_counter() - start, node.parents, grad)
        return in_grads
    return node.backward(grad)


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
