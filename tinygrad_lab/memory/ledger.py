"""The accounting behind tinygrad_lab.memory: a Ledger counts each buffer once, by the array that
owns it, in one of five categories, and watches it with a weak reference so its bytes leave
`live` when NumPy/CuPy frees it. While it runs it is `function._memory`, which the engine's
allocation sites check (one global each); `live_arrays` finds what is alive when it starts.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

from tinygrad_lab import function

CATEGORIES = ("parameters", "gradients", "optimizer_state", "activations", "temporaries")
_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_RANK = (4, 2, 3, 1, 0)  # by category index: which role wins when a buffer has several
_ACT, _TMP = _INDEX["activations"], _INDEX["temporaries"]
ALL = "*"
"""The key of the figures summed over devices (what device=None asks for)."""


def owner(arr: Any) -> Any:
    """The array that owns arr's memory: down the chain of `.base` while it is an array
    (StandinArray views sit on a plain ndarray; a Numba result's base is not an array)."""
    while True:
        base = getattr(arr, "base", None)
        if base is None or not hasattr(base, "dtype") or not hasattr(base, "nbytes"):
            return arr
        arr = base


class _Ref(weakref.ref):
    """One counted buffer: a weak reference to its owning array plus what it is counted as."""

    __slots__ = ("key", "nbytes", "device", "category", "saves", "op", "module")


class _NodeRef(weakref.ref):
    """A graph node that saved counted arrays: its entries, released once (backward or death)."""

    __slots__ = ("key", "saved")


class _Watch:
    """Peaks since a reset: per device and category, of the device total, the composition at
    that total's peak, and the activation bytes live per op and per module."""

    def __init__(self, ledger: Ledger) -> None:
        self.peak = {d: list(row) for d, row in ledger.live.items()}
        self.total_peak = {d: sum(row) for d, row in ledger.live.items()}
        self.at_peak = {d: list(row) for d, row in ledger.live.items()}
        self.op_peak = dict(ledger.op_live)
        self.module_peak = dict(ledger.module_live)

    def stats(self, ledger: Ledger, device: str) -> dict[str, dict[str, int]]:
        live = ledger.live.get(device, [0] * 5)
        peak, at = self.peak.get(device, [0] * 5), self.at_peak.get(device, [0] * 5)
        out = {c: {"live": live[i], "peak": peak[i], "at_peak": at[i]}
               for i, c in enumerate(CATEGORIES)}
        total = self.total_peak.get(device, 0)
        out["total"] = {"live": sum(live), "peak": total, "at_peak": total}
        return out


class Ledger:
    """The accounting itself: installed as `function._memory` while it runs."""

    def __init__(self, timeline: bool = False) -> None:
        self.entries: dict[int, _Ref] = {}
        self.nodes: dict[int, _NodeRef] = {}
        self.live: dict[str, list[int]] = {ALL: [0] * 5}
        self.op_live: dict[str, int] = {}
        self.module_live: dict[str, int] = {}
        self.watches: list[_Watch] = []
        self.main = self.watch()
        self.stack: list[str] = []  # dotted names of the modules running, innermost last
        self.names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self.phase = "forward"
        self.events: list[tuple[str, tuple[int, ...]]] | None = [] if timeline else None
        """With timeline=True (estimate's probe): (phase, live by category) after each growth."""

    def watch(self) -> _Watch:
        w = _Watch(self)
        self.watches.append(w)
        return w

    # --- what the hooks call ----------------------------------------------------------------
    def add(self, arr: Any, category: str, device: str, op: str = "", module: str = "") -> Any:
        """Count arr's buffer as `category` (or raise it to that role); returns its entry."""
        base = owner(arr)
        ref = self.entries.get(id(base))
        index = _INDEX[category]
        if ref is not None:
            if _RANK[index] > _RANK[ref.category]:
                self._change(ref, -ref.nbytes)
                ref.category, ref.op, ref.module = index, op, module
                self._change(ref, ref.nbytes)
            return ref
        try:
            ref = _Ref(base, self._freed)
        except TypeError:  # not weakly referenceable: its lifetime cannot be followed
            return None
        ref.key, ref.nbytes, ref.device = id(base), int(base.nbytes), device
        ref.category, ref.saves, ref.op, ref.module = index, 0, op, module
        self.entries[ref.key] = ref
        self._change(ref, ref.nbytes)
        return ref

    def add_all(self, values: Any, category: str, device: str) -> None:
        for v in values:
            if hasattr(v, "nbytes") and hasattr(v, "shape"):
                self.add(v, category, device)

    def on_apply(self, fn: Any, out: Any) -> None:
        """After a forward: its outputs are temporaries, what it saved activations."""
        device = getattr(fn, "target", fn.backend).device  # ToDevice's output lives on target
        self.add_all(out if isinstance(out, (list, tuple)) else (out,), "temporaries", device)
        if fn.recording and fn.saved:
            self.on_save(fn, self.stack[-1] if self.stack else "(no module)")

    def on_save(self, node: Any, module: str) -> None:
        """Count what a node saved as activations, until backward releases the node or the
        node is dropped unwalked (a graph nobody called backward on)."""
        kept = []
        for v in node.saved:
            if hasattr(v, "nbytes") and hasattr(v, "shape"):
                ref = self.add(v, "activations", node.backend.device, node.name, module)
                if ref is not None:
                    ref.saves += 1
                    kept.append(ref)
        if kept:
            watcher = _NodeRef(node, self._node_gone)
            watcher.key, watcher.saved = id(node), kept
            self.nodes[watcher.key] = watcher

    def release(self, node: Any) -> None:
        """Backward let go of a node's saved arrays."""
        watcher = self.nodes.pop(id(node), None)
        if watcher is not None:
            self._unsave(watcher.saved)

    def _node_gone(self, watcher: Any) -> None:
        if self.nodes.get(watcher.key) is watcher:
            del self.nodes[watcher.key]
            self._unsave(watcher.saved)

    def _unsave(self, refs: list[_Ref]) -> None:
        """One saver fewer each; an activation nobody saves any more but still alive (a
        forward output someone holds) is a temporary until it is freed."""
        for ref in refs:
            if self.entries.get(ref.key) is ref and ref.saves > 0:
                ref.saves -= 1
                if ref.saves == 0 and ref.category == _ACT:
                    self._change(ref, -ref.nbytes)
                    ref.category = _TMP
                    self._change(ref, ref.nbytes)

    def call_module(self, module: Any, args: Any, kw: Any) -> Any:
        """Module.__call__ while tracking: ops inside are attributed to this module."""
        name = self.names.get(module)
        if name is None:
            name = self._name(module)
        self.stack.append(name)
        try:
            return module.forward(*args, **kw)
        finally:
            self.stack.pop()

    def _name(self, module: Any) -> str:
        """A module first seen outside any other names its whole tree (GPT.blocks.0.attn.qkv);
        one first seen inside another is named after it (parent.ClassName)."""
        if self.stack:
            name = f"{self.stack[-1]}.{type(module).__name__}"
            self.names[module] = name
            return name
        todo = [(type(module).__name__, module)]
        while todo:
            name, m = todo.pop()
            self.names.setdefault(m, name)
            todo.extend((f"{name}.{child_name}", child) for child_name, child in m.children())
        return self.names[module]

    # --- the arithmetic ---------------------------------------------------------------------
    def _freed(self, ref: Any) -> None:
        if self.entries.get(ref.key) is ref:
            del self.entries[ref.key]
            self._change(ref, -ref.nbytes)

    def _change(self, ref: _Ref, delta: int) -> None:
        index, device = ref.category, ref.device
        row = self.live.get(device)
        if row is None:
            row = self.live[device] = [0] * 5
        row[index] += delta
        every = self.live[ALL]
        every[index] += delta
        if index == _ACT and ref.op:
            self.op_live[ref.op] = self.op_live.get(ref.op, 0) + delta
            self.module_live[ref.module] = self.module_live.get(ref.module, 0) + delta
        if delta <= 0:
            return
        for w in self.watches:
            for dev, r in ((device, row), (ALL, every)):
                peak = w.peak.setdefault(dev, [0] * 5)
                if r[index] > peak[index]:
                    peak[index] = r[index]
                total = sum(r)
                if total > w.total_peak.get(dev, 0):
                    w.total_peak[dev], w.at_peak[dev] = total, list(r)
            if index == _ACT and ref.op:
                if self.op_live[ref.op] > w.op_peak.get(ref.op, 0):
                    w.op_peak[ref.op] = self.op_live[ref.op]
                if self.module_live[ref.module] > w.module_peak.get(ref.module, 0):
                    w.module_peak[ref.module] = self.module_live[ref.module]
        if self.events is not None:
            self.events.append((self.phase, tuple(every)))

    def scan(self) -> None:
        """Register what is alive already: parameters (and their gradients), optimizer state,
        every other tensor, and the saved arrays of graphs not yet walked."""
        tensors, optimizers, nodes = _live_objects()
        for device, category, arr in _arrays(tensors, optimizers):
            self.add(arr, category, device)
        for node in nodes:
            if getattr(node, "recording", False) and getattr(node, "saved", None):
                self.on_save(node, "(before accounting)")

    def close(self) -> None:
        self.entries, self.nodes = {}, {}  # the weak references and callbacks go with them


def live_arrays() -> Iterator[tuple[str, str, Any]]:
    """(device, category, array) for every array reachable from live tensors, optimizers and
    graph nodes, found by walking the garbage collector's objects (slow: for a start of
    accounting or a leak check). Parameters come first, so a buffer takes its highest role."""
    tensors, optimizers, nodes = _live_objects()
    yield from _arrays(tensors, optimizers)
    for node in nodes:
        if getattr(node, "recording", False):
            for v in getattr(node, "saved", None) or ():
                if hasattr(v, "nbytes") and hasattr(v, "shape"):
                    yield node.backend.device, "activations", v


def _live_objects() -> tuple[list[Any], list[Any], list[Any]]:
    """Every live Tensor (Parameters first), Optimizer and graph node."""
    from tinygrad_lab.nn.module import Parameter
    from tinygrad_lab.optim import Optimizer
    from tinygrad_lab.tensor import Tensor

    tensors, optimizers, nodes = [], [], []
    for obj in gc.get_objects():
        kind = type(obj)  # type(): no __class__ lookups on foreign proxies
        if issubclass(kind, Tensor):
            tensors.append(obj)
        elif issubclass(kind, Optimizer):
            optimizers.append(obj)
        elif issubclass(kind, function.Function):
            nodes.append(obj)
    tensors.sort(key=lambda t: not isinstance(t, Parameter))
    return tensors, optimizers, nodes


def _arrays(tensors: list[Any], optimizers: list[Any]) -> Iterator[tuple[str, str, Any]]:
    from tinygrad_lab.nn.module import Parameter

    for t in tensors:
        yield t._device, "parameters" if isinstance(t, Parameter) else "temporaries", t.data
        if t.grad is not None:
            yield t._device, "gradients", t.grad.data
    for opt in optimizers:
        for p in opt.params:
            for v in (opt.state.get(id(p)) or {}).values():
                if hasattr(v, "nbytes") and hasattr(v, "shape"):
                    yield p._device, "optimizer_state", v
