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
import contextvars
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as _np

from tinygrad_lab import helpers
from tinygrad_lab.backends import Array, Backend, array_module
from tinygrad_lab.flops import numel

if TYPE_CHECKING:
    from tinygrad_lab.tensor import Tensor


class _Mode:
    """One thread's modes: grad mode, its tl.profile() records, whether its ops are timed."""

    __slots__ = ("grad_enabled", "profiler", "observed")

    def __init__(self) -> None:
        self.grad_enabled = True
        self.profiler: ProfileRecords | None = None
        self.observed = helpers.DEBUG >= 2
        """True when each op must be timed (DEBUG>=2 or inside tl.profile()); read once per op."""


_mode_var: contextvars.ContextVar[_Mode | None] = contextvars.ContextVar(
    "tinygrad_lab_mode", default=None)
"""Grad mode and profiling are per thread, as PyTorch's grad mode is: a `no_grad` block in an
evaluation thread leaves training in another thread recording, and a new thread starts with
grad enabled and nothing profiled. (A context variable: each thread has its own context, and
reading one is cheaper than a threading.local attribute; read once per op.)"""
_get_mode = _mode_var.get


def _new_mode() -> _Mode:
    mode = _Mode()
    _mode_var.set(mode)
    return mode


def _this_thread() -> _Mode:
    return _get_mode() or _new_mode()


_changed_threads = 1 if helpers.DEBUG >= 2 else 0
"""How many threads run with a mode other than the default (grad enabled, nothing timed), plus
one for good under DEBUG>=2. While it is 0, which is almost always, an op reads no per-thread
state: a thread whose own mode is changed has counted itself before its next op, so it never
takes that shortcut; another thread's change only sends ops down the slower, exact path."""
_changed_lock = threading.Lock()


def _set_mode(mode: _Mode, grad_enabled: bool, observed: bool) -> None:
    """Change this thread's modes, keeping _changed_threads exact."""
    global _changed_threads
    before = mode.grad_enabled and not mode.observed
    mode.grad_enabled, mode.observed = grad_enabled, observed
    after = grad_enabled and not observed
    if before != after:
        with _changed_lock:
            _changed_threads += 1 if before else -1


def is_grad_enabled() -> bool:
    return _this_thread().grad_enabled


def is_observed() -> bool:
    """Whether this thread times each op (inside tl.profile(), or DEBUG>=2)."""
    return _this_thread().observed


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Build no graph inside the block (evaluation, optimizer steps); this thread only."""
    mode = _this_thread()
    previous = mode.grad_enabled
    _set_mode(mode, False, mode.observed)
    try:
        yield
    finally:
        _set_mode(mode, previous, mode.observed)


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    mode = _this_thread()
    previous = mode.grad_enabled
    _set_mode(mode, True, mode.observed)
    try:
        yield
    finally:
        _set_mode(mode, previous, mode.observed)


class Function:
    """Base of every op, and the node of the tape: one instance per op call (see the module
    docstring). Besides the op's own parameters, a node holds only the attributes below, so
    those names are taken: backend, recording, saved, parents, versions, needs_input_grad,
    outputs."""

    backend: Backend
    recording: bool
    saved: tuple[Any, ...] | None
    parents: tuple[Tensor, ...]
    versions: tuple[int, ...] | None = None
    """The inputs' version counters when forward read them, set when recording and one is not
    0 (None: all were 0, as for most nodes, whose inputs are other ops' fresh outputs): backward
    refuses to run on saved values an in-place update has changed since (check_versions)."""
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

    def workspace(self, *arrays: Any) -> None:
        """Declare scratch arrays (im2col columns, recomputed attention weights) so the memory
        accounting counts them while they live; a no-op when it is off."""
        if _memory is not None:
            _memory.add_all(arrays, "temporaries", self.backend.device)

    def saved_bytes(self) -> int:
        return sum(int(getattr(v, "nbytes", 0)) for v in self.saved or ())

    # --- FLOP counts (the convention: tinygrad_lab/flops.py) -----------------------------
    flops_per_element: ClassVar[tuple[int, int | tuple[int, ...]] | None] = None
    """(forward, backward) FLOPs per output element, for an op that costs that: backward is
    one count, or one per input, summed over the inputs that need a gradient. None: the op
    overrides flops() and backward_flops(). Every op of tinygrad_lab.ops does one or the other
    (tests/test_flops.py); an op from elsewhere that does neither counts one per output element
    forward and twice that backward."""

    def flops(self, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> int:
        """Floating-point operations of this node's forward, from the shapes (and the node's
        parameters)."""
        per = self.flops_per_element
        return numel(out_shape) * (1 if per is None else per[0])

    def backward_flops(self, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> int:
        """Floating-point operations of this node's backward (the gradients it returns, for
        the inputs that need one; summing a broadcast gradient back is the tape's, not counted)."""
        per = self.flops_per_element
        if per is None:
            return 2 * self.flops(in_shapes, out_shape)
        back = per[1]
        if isinstance(back, int):
            return numel(out_shape) * back
        return numel(out_shape) * sum(c for c, need in zip(back, self.needs_input_grad) if need)

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
        if _changed_threads:  # some thread is under no_grad or profiled: read this one's modes
            mode = _get_mode() or _new_mode()
            observed = mode.observed
            if mode.grad_enabled:
                recording = True in needs
            else:
                recording, needs = False, (False,) * len(inputs)
        else:
            observed, recording = False, True in needs
        fn.backend = backend
        fn.recording = recording
        fn.saved = ()
        # known before forward, so an op can skip saving what no gradient will need
        fn.needs_input_grad = needs
        if observed:
            arrays = [t._data for t in inputs]
            start = time.perf_counter()
            out = fn.forward(*arrays)
            backend.synchronize()
            _record(fn, "forward", start, time.perf_counter(), inputs, arrays, out)
        elif len(inputs) == 2:
            out = fn.forward(first._data, second._data)
        elif len(inputs) == 1:
            out = fn.forward(first._data)
        else:
            out = fn.forward(*[t._data for t in inputs])
        result = _wrap(out, backend, first._device, recording)
        if recording:
            fn.parents = inputs
            if len(inputs) == 2:
                if first._version or second._version:
                    fn.versions = (first._version, second._version)
            elif len(inputs) == 1:
                if first._version:
                    fn.versions = (first._version,)
            else:
                fn.versions = tuple([t._version for t in inputs])
            result._ctx = fn
        if _memory is not None:
            _memory.on_apply(fn, out)
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
                for a in packed._data]
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
class ProfileRecords(list):  # list[dict[str, Any]]
    """What `with tl.profile() as records:` yields: one dict per op forward and backward (and
    per optimizer update), in the order they ran, plus the region's times:

    - `wall_seconds`: the region's wall time (set when the block ends);
    - `profiler_seconds`: the part of it the profiler spent building records;
    - `started`: the region's start (time.perf_counter); each record's `start_ms` counts from it.

    A record: op, phase ("forward", "backward", "optimizer"), device, start_ms, ms, in_shapes,
    out_shape, out_bytes, saved_bytes, bytes (read + new arrays written; 0 for a view), flops.
    tinygrad_lab/profiling.py turns them into a table, step totals and a Chrome trace.
    """

    started: float = 0.0
    wall_seconds: float = 0.0
    profiler_seconds: float = 0.0


_memory: Any = None
"""The running tinygrad_lab.memory ledger, or None when memory is not accounted (the default):
checked once per op and per allocation site."""

_wrap: Any = None
"""Tensor._wrap, installed by tinygrad_lab.tensor (which imports this module first)."""


def _record(fn: Function, phase: str, start: float, end: float, inputs: Any, reads: list[Any],
            out: Any, written: Any = None) -> None:
    """Record a forward or backward call that ran from `start` to `end` (perf_counter). `reads`:
    the arrays it read (backward: the output gradients and what forward saved); `written`:
    backward's input gradients (forward writes `out`)."""
    shapes = [tuple(t.shape) for t in inputs] if inputs is not None else []
    outs = out if isinstance(out, (list, tuple)) else (out,)  # several for apply_many's ops
    out_shape = tuple(getattr(outs[0], "shape", ())) if outs else ()
    entry = {
        "op": fn.name,
        "node": id(fn),  # the same in a node's forward and backward records (tl.viz matches them)
        "phase": phase,
        "device": fn.backend.device,
        "start_ms": _start_ms(start),
        "ms": (end - start) * 1e3,
        "in_shapes": shapes,
        "out_shape": out_shape,
        "out_bytes": sum(int(getattr(o, "nbytes", 0)) for o in outs),
        "saved_bytes": fn.saved_bytes(),
        "bytes": _moved_bytes(reads, outs if written is None else written),
        "flops": (fn.backward_flops(shapes, out_shape) if phase == "backward"
                  else fn.flops(shapes, out_shape)),
    }
    _store(entry, end)
    if helpers.DEBUG >= 2:
        extra = f" saved={entry['saved_bytes']}B" if helpers.DEBUG >= 3 else ""
        helpers.log(f"{phase:<8} {fn.name:<16} {shapes} -> {out_shape} {entry['ms']:.3f} ms{extra}")


def _start_ms(start: float) -> float:
    profiler = _this_thread().profiler
    return (start - profiler.started) * 1e3 if profiler is not None else 0.0


def _store(entry: dict[str, Any], end: float) -> None:
    """Append a record to this thread's profile, counting the bookkeeping since `end` (the
    call's end) as the profiler's own time."""
    profiler = _this_thread().profiler
    if profiler is not None:
        profiler.append(entry)
        profiler.profiler_seconds += time.perf_counter() - end


def _moved_bytes(reads: Any, writes: Any) -> int:
    """Bytes a call moved: every array it read (each once) plus every new array it wrote. An
    output that is a view of an input (reshape, permute, expand, basic slicing, a gradient
    passed through) was not written, and a call that wrote nothing new moved nothing."""
    arrays = list({id(a): a for a in reads if hasattr(a, "nbytes")}.values())
    new = [w for w in writes if hasattr(w, "nbytes") and not any(_shares(w, a) for a in arrays)]
    if not new:
        return 0
    return sum(int(a.nbytes) for a in arrays) + sum(int(w.nbytes) for w in new)


def _shares(a: Any, b: Any) -> bool:
    if type(a) is not type(b):  # arrays of two devices
        return False
    if isinstance(a, _np.ndarray):
        return bool(_np.may_share_memory(a, b))
    return bool(array_module(a).may_share_memory(a, b))


def timed_backward(node: Function, grad: Any) -> tuple[Array | None, ...]:
    """Run a node's backward, recording its time when profiling or DEBUG>=2. `grad` is the
    output's gradient (a list of them for a node made by apply_many). The caller checks the
    versions first (check_versions)."""
    if (_get_mode() or _new_mode()).observed:
        start = time.perf_counter()
        in_grads = node.backward(grad)
        node.backend.synchronize()
        grads = grad if isinstance(grad, list) else [grad]
        _record(node, "backward", start, time.perf_counter(), node.parents,
                [*grads, *(node.saved or ())], grad, in_grads)
        return in_grads
    return node.backward(grad)


def timed_update(optimizer: Any, p: Tensor, state: dict[str, Any]) -> None:
    """Run one optimizer update of parameter p (Optimizer.step, when profiling or DEBUG>=2),
    recorded with phase "optimizer": it reads p, its gradient and its state and writes p and
    the state, all in place."""
    grad = p.grad.data  # type: ignore[union-attr]
    start = time.perf_counter()
    optimizer.update(p, grad, state)
    p._backend.synchronize()
    end = time.perf_counter()
    state_bytes = sum(int(getattr(v, "nbytes", 0)) for v in state.values())
    entry = {
        "op": type(optimizer).__name__,
        "phase": "optimizer",
        "device": p._backend.device,
        "start_ms": _start_ms(start),
        "ms": (end - start) * 1e3,
        "in_shapes": [p.shape],
        "out_shape": p.shape,
        "out_bytes": 0,
        "saved_bytes": 0,
        "bytes": 2 * (int(p.data.nbytes) + state_bytes) + int(grad.nbytes),
        "flops": optimizer.update_flops() * numel(p.shape),
    }
    _store(entry, end)
    if helpers.DEBUG >= 2:
        helpers.log(f"{'update':<8} {entry['op']:<16} {p.shape} {entry['ms']:.3f} ms")


@contextlib.contextmanager
def profile() -> Iterator[ProfileRecords]:
    """Collect one record per op forward and backward and per optimizer update:
    `with tl.profile() as records: ...`; records.wall_seconds is the block's wall time."""
    mode = _this_thread()  # this thread's: ops other threads run meanwhile are not recorded
    previous = mode.profiler
    records = ProfileRecords()
    mode.profiler = records
    _set_mode(mode, mode.grad_enabled, True)
    records.started = time.perf_counter()
    try:
        yield records
    finally:
        records.wall_seconds = time.perf_counter() - records.started
        mode.profiler = previous
        _set_mode(mode, mode.grad_enabled, previous is not None or helpers.DEBUG >= 2)


def check_versions(node: Function, output: Tensor | None = None) -> None:
    """Raise when a tensor whose value `node` saved for backward was changed in place since
    forward (an optimizer step, zero_(), a .data assignment, load_state_dict): backward would
    otherwise compute the gradient of the new values, silently. `output`: the node's output,
    checked too (its version is 0 when made). A node that saved no array (nothing, or only
    shapes and numbers) needs no value back."""
    if not any(_holds_array(v) for v in node.saved or ()):
        return
    versions = node.versions or (0,) * len(node.parents)
    changed = [(f"input {i}", t, expected)
               for i, (t, expected) in enumerate(zip(node.parents, versions))
               if t._version != expected]
    if output is not None and output._version:
        changed.append(("its output", output, 0))
    if not changed:
        return
    where, t, expected = changed[0]
    raise RuntimeError(
        "a value needed for gradient computation was modified in place: "
        f"{where} of {node.name} (shape {t.shape}, {t.dtype}) is at version {t._version}, "
        f"expected {expected}. An in-place update (an optimizer step, zero_(), a .data "
        "assignment, load_state_dict) ran between this forward and its backward; call "
        "backward before the update, or run the forward again after it"
    )


def _holds_array(value: Any) -> bool:
    if hasattr(value, "nbytes"):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_array(v) for v in value)
