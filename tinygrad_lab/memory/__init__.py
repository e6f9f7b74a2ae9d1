"""Memory accounting: live and peak bytes of the arrays the engine allocates, per device, in five
categories, per op and per module; `estimate()` predicts them before a run, `report()` compares.

    tl.memory.reset_peak()              # starts the accounting (off until then: no cost)
    train_step(model, batch, loss_fn, opt)
    tl.memory.peak(), tl.memory.stats(), tl.memory.by_op()
    print(tl.memory.report(tl.memory.estimate(model, (784,), opt, batch_size=128)))

What is counted: every buffer the engine hands out or keeps, once, by the array that owns the
memory (a view counts as its base): op outputs and tensors made by `Tensor(...)` (temporaries),
what nodes keep for backward with `self.save` (activations, attributed to the op that saved it
and the innermost module running), scratch an op declares with `self.workspace` (temporaries),
gradients flowing backward (temporaries) and landing in `.grad` (gradients), `Parameter`s and
`Optimizer.init_state` arrays. A buffer with several roles takes the highest of parameters >
optimizer_state > gradients > activations > temporaries; an activation whose last saving node
is released (backward walked past it) and that is still alive falls back to temporaries. Each
buffer is watched with a weak reference, so its bytes leave `live` when NumPy/CuPy frees it.
Not counted: the scratch inside one op's maths (NumPy temporaries, kernel buffers) that the op
does not declare, and Python objects.

Off by default: then each op pays one global check (`function._memory is None`). Turning it on
(`enable`, `track`, `reset_peak`) first registers what is alive already (parameters, their
gradients, optimizer state, every other tensor, saved arrays of graphs not yet walked).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tinygrad_lab import function
from tinygrad_lab.backends import canonical_device
from tinygrad_lab.memory.ledger import ALL, CATEGORIES, Ledger, _Watch, live_arrays, owner
from tinygrad_lab.memory.predict import Estimate, estimate, optimizer_state_bytes

# --- the public API -----------------------------------------------------------------------------
_last: Ledger | None = None
"""The ledger of the latest accounting, kept after it stops so its figures can still be read."""


def is_enabled() -> bool:
    return function._memory is not None


def enable() -> None:
    """Start the accounting (a no-op when it runs): registers what is alive, peaks = live."""
    global _last
    if function._memory is None:
        ledger = Ledger()
        ledger.scan()
        ledger.main = ledger.watch()  # peaks start at what the scan found
        ledger.watches = [ledger.main]
        function._memory = _last = ledger


def disable() -> None:
    """Stop the accounting; the figures of the last run stay readable (frozen)."""
    ledger = function._memory
    if ledger is not None:
        function._memory = None
        ledger.close()


def _ledger() -> Ledger:
    """The running ledger, else the last one (frozen), else a one-off scan of what is alive."""
    ledger = function._memory or _last
    if ledger is None:
        ledger = Ledger()
        ledger.scan()
        ledger.close()
    return ledger


def _device(device: str | None) -> str:
    return ALL if device is None else canonical_device(device)


def reset_peak(device: str | None = None) -> None:
    """Peaks (all devices, or one) start again from what is live now, like
    torch.cuda.reset_peak_memory_stats; starts the accounting if it is off."""
    enable()
    ledger = function._memory
    assert ledger is not None
    fresh = _Watch(ledger)
    if device is None:
        ledger.main.__dict__.update(fresh.__dict__)
        return
    for key in (_device(device), ALL):
        for attr in ("peak", "total_peak", "at_peak"):
            table = getattr(ledger.main, attr)
            table.pop(key, None)
            if key in getattr(fresh, attr):
                table[key] = getattr(fresh, attr)[key]


def stats(device: str | None = None) -> dict[str, dict[str, int]]:
    """{category: {"live", "peak", "at_peak"}, "total": {...}} in bytes: "peak" is each
    category's own peak, "at_peak" its share of the moment the total peaked."""
    ledger = _ledger()
    return ledger.main.stats(ledger, _device(device))


def peak(device: str | None = None, category: str | None = None) -> int:
    """Peak bytes since the last reset: of the total live (category None) or of one category."""
    return stats(device)[category or "total"]["peak"]


def live(device: str | None = None, category: str | None = None) -> int:
    return stats(device)[category or "total"]["live"]


def by_op() -> dict[str, int]:
    """Peak bytes saved for backward, live at once, per op name (since the last reset)."""
    return dict(sorted(_ledger().main.op_peak.items(), key=lambda kv: -kv[1]))


def by_module() -> dict[str, int]:
    """Peak bytes saved for backward, live at once, per module (dotted path, innermost)."""
    return dict(sorted(_ledger().main.module_peak.items(), key=lambda kv: -kv[1]))


class Tracker:
    """What `with tl.memory.track() as tracker:` yields: the same readings as the module's
    functions, with peaks counted from the start of the block (frozen when it ends)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.watch = ledger, ledger.watch()

    def stats(self, device: str | None = None) -> dict[str, dict[str, int]]:
        return self.watch.stats(self.ledger, _device(device))

    def peak(self, device: str | None = None, category: str | None = None) -> int:
        return self.stats(device)[category or "total"]["peak"]

    def live(self, device: str | None = None, category: str | None = None) -> int:
        return self.stats(device)[category or "total"]["live"]

    def by_op(self) -> dict[str, int]:
        return dict(sorted(self.watch.op_peak.items(), key=lambda kv: -kv[1]))

    def by_module(self) -> dict[str, int]:
        return dict(sorted(self.watch.module_peak.items(), key=lambda kv: -kv[1]))

    def report(self, estimate: Estimate | None = None, device: str | None = None) -> str:
        """The table of `report()` for this block (returned, not printed)."""
        return _table(self.stats(device), estimate, device, self.by_op(), self.ledger)


@contextlib.contextmanager
def track() -> Iterator[Tracker]:
    """Account inside the block only (unless it was on already); the tracker's peaks start at
    the block's start and stay readable after it."""
    started = function._memory is None
    enable()
    ledger = function._memory
    assert ledger is not None
    tracker = Tracker(ledger)
    try:
        yield tracker
    finally:
        if tracker.watch in ledger.watches:
            ledger.watches.remove(tracker.watch)
        if started:
            disable()


def report(estimate: Estimate | None = None, device: str | None = None) -> str:
    """Print and return the table: category | predicted | measured peak | at the total's peak,
    then the total and an "unexplained" line (measured - predicted, and on CUDA the CuPy
    pool's bytes in use minus the bytes this accounting sees live)."""
    ledger = _ledger()
    text = _table(ledger.main.stats(ledger, _device(device)), estimate, device, by_op(), ledger)
    print(text)
    return text


def allocator_bytes(device: str) -> int | None:
    """Bytes the device's allocator has handed out now: on CUDA, CuPy's default memory pool in
    use (blocks rounded up to 512 B, and arrays the engine never saw, such as CuPy's own
    temporaries); None on the CPU, where NumPy keeps no such count."""
    if not canonical_device(device).startswith("cuda"):
        return None
    import cupy  # only for a CUDA device: never imported on the CPU

    with cupy.cuda.Device(int(canonical_device(device).split(":")[1])):
        return int(cupy.get_default_memory_pool().used_bytes())


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return str(n)


def _table(stat: dict[str, dict[str, int]], est: Estimate | None, device: str | None,
           ops: dict[str, int], ledger: Ledger) -> str:
    title = f"memory ({device or 'all devices'})"
    rows = [f"{title:<27}{'predicted':>14}{'measured peak':>16}{'at total peak':>16}"]
    for c in (*CATEGORIES, "total"):
        pred = _fmt(est.total if c == "total" else est.bytes[c]) if est is not None else "-"
        label = "total (peak)" if c == "total" else c
        rows.append(f"{label:<27}{pred:>14}{_fmt(stat[c]['peak']):>16}"
                    f"{_fmt(stat[c]['at_peak']):>16}")
    measured = stat["total"]["peak"]
    if est is not None:
        gap = measured - est.total
        share = f" ({100 * gap / measured:+.1f}% of measured)" if measured else ""
        rows.append(f"{'unexplained':<27}{_fmt(gap):>14}{share}  measured peak - predicted")
    used = allocator_bytes(device) if device is not None else None
    if used is not None:
        seen = ledger.live.get(canonical_device(device), [0] * 5)  # type: ignore[arg-type]
        rows.append(f"{'unexplained (allocator)':<27}{_fmt(used - sum(seen)):>14}  CuPy pool in "
                    f"use {_fmt(used)} - tracked live {_fmt(sum(seen))}")
    if ops:
        top = ", ".join(f"{op} {_fmt(b)}" for op, b in list(ops.items())[:6])
        rows.append(f"saved for backward by op: {top}")
    return "\n".join(rows)


__all__ = ["ALL", "CATEGORIES", "Estimate", "Ledger", "Tracker", "allocator_bytes", "by_module",
           "by_op", "disable", "enable", "estimate", "is_enabled", "live", "live_arrays",
           "optimizer_state_bytes", "owner", "peak", "report", "reset_peak", "stats", "track"]
