"""What a profiled region cost: per-op rates against the machine's ceilings, the step's totals and
engine overhead, as a table (`summarize`), as data (`profile_summary`, `step_timing`) and as a
Chrome / Perfetto trace (`export_chrome_trace`).

    with tl.profile() as records:          # records: one dict per op call (function.py)
        loss = F.cross_entropy(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
    print(tl.summarize(records))
    tl.export_chrome_trace(records, "step.json")   # open in https://ui.perfetto.dev

- An op's GFLOP/s is its FLOPs (tinygrad_lab/flops.py) over its time; its GB/s the bytes it
  read and wrote (views move none) over its time; "% GEMM" and "% copy" compare them with the
  ceilings measured once per machine (tinygrad_lab/ceilings.py).
- The records time the array maths: each op's forward and backward and each optimizer update,
  device synchronised. Engine overhead is the rest of the region's wall time: building the
  tape, dispatch, the backward walk, Python, and the little array work the tape does between
  ops (summing broadcast gradients back, adding gradients that meet). The profiler's own
  bookkeeping is measured and taken out of the wall time first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from tinygrad_lab import ceilings as _ceilings
from tinygrad_lab.ceilings import Ceilings
from tinygrad_lab.flops import step_flops

Records = Sequence[dict[str, Any]]
CeilingsArg = Ceilings | Literal["auto"] | None
"""Ceilings to compare with; "auto": this machine's (tl.ceilings.get, measured on first use)
for the records' device when it is a CPU or CUDA device; None: no comparison."""


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """Totals of one profiled region (a training step, say).

    wall_seconds: the region's wall time less the profiler's own bookkeeping; op_seconds: the
    time of the recorded array maths (ops forward and backward, optimizer updates);
    overhead_fraction: (wall - op) / wall, the engine's share; flops: step_flops() by phase;
    bytes: read + written by the records; gflops, gbps: flops["total"], bytes over wall_seconds;
    gemm_fraction, copy_fraction: those rates over the ceilings (None without ceilings).
    """

    wall_seconds: float
    op_seconds: float
    overhead_fraction: float
    flops: dict[str, int]
    bytes: int
    gflops: float
    gbps: float
    gemm_fraction: float | None
    copy_fraction: float | None
    ceilings: Ceilings | None

    @property
    def overhead_seconds(self) -> float:
        return self.wall_seconds - self.op_seconds

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready), the overhead in seconds included."""
        out = dataclasses.asdict(self)
        out["overhead_seconds"] = self.overhead_seconds
        return out


def _resolve_ceilings(records: Records, ceilings: CeilingsArg) -> Ceilings | None:
    if ceilings != "auto":
        return ceilings  # type: ignore[return-value]
    device = records[0].get("device", "cpu") if records else "cpu"
    if device.split(":")[0] not in ("cpu", "cuda"):  # a test stand-in has no machine to measure
        return None
    return _ceilings.get(device)


def step_timing(records: Records, ceilings: CeilingsArg = "auto") -> StepTiming:
    """The totals of `with tl.profile() as records:` (see StepTiming). Called inside the block,
    the wall time runs to now."""
    op_seconds = sum(r["ms"] for r in records) / 1e3
    wall = getattr(records, "wall_seconds", 0.0)
    started = getattr(records, "started", 0.0)
    if not wall and started:  # still inside the block
        wall = time.perf_counter() - started
    wall -= getattr(records, "profiler_seconds", 0.0)
    wall = max(wall, op_seconds)  # a plain list of records has no wall time: no overhead
    flops = step_flops(records)
    moved = sum(int(r.get("bytes", 0)) for r in records)
    gflops = flops["total"] / wall / 1e9 if wall > 0 else 0.0
    gbps = moved / wall / 1e9 if wall > 0 else 0.0
    ceil = _resolve_ceilings(records, ceilings)
    return StepTiming(
        wall_seconds=wall,
        op_seconds=op_seconds,
        overhead_fraction=(wall - op_seconds) / wall if wall > 0 else 0.0,
        flops=flops,
        bytes=moved,
        gflops=gflops,
        gbps=gbps,
        gemm_fraction=gflops / ceil.gemm_gflops if ceil else None,
        copy_fraction=gbps / ceil.copy_gbps if ceil else None,
        ceilings=ceil,
    )


def profile_summary(records: Records, ceilings: CeilingsArg = "auto") -> dict[str, Any]:
    """The table of `summarize` as data: {"ops": one dict per (op, phase), most time first,
    with calls, ms, step_fraction, flops, bytes, gflops, gbps, gemm_fraction, copy_fraction
    (None without ceilings or without FLOPs/bytes); "step": step_timing(...)}."""
    step = step_timing(records, ceilings)
    ceil = step.ceilings
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["op"], r["phase"]), []).append(r)
    rows = []
    for (op, phase), rs in groups.items():
        ms = sum(r["ms"] for r in rs)
        flops = sum(int(r["flops"]) for r in rs)
        moved = sum(int(r.get("bytes", 0)) for r in rs)
        gflops = flops / (ms * 1e6) if ms > 0 else 0.0
        gbps = moved / (ms * 1e6) if ms > 0 else 0.0
        rows.append({
            "op": op, "phase": phase, "calls": len(rs), "ms": ms,
            "step_fraction": ms / (step.wall_seconds * 1e3) if step.wall_seconds > 0 else 0.0,
            "flops": flops, "bytes": moved, "gflops": gflops, "gbps": gbps,
            "gemm_fraction": gflops / ceil.gemm_gflops if ceil and flops else None,
            "copy_fraction": gbps / ceil.copy_gbps if ceil and moved else None,
        })
    rows.sort(key=lambda row: -row["ms"])
    return {"ops": rows, "step": step}


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def summarize(records: Records, ceilings: CeilingsArg = "auto") -> str:
    """A table of profile records grouped by (op, phase), most time first: calls, ms, share of
    the step's wall time, GFLOP/s and GB/s with their share of the machine's ceilings; then the
    step's totals and its engine overhead (see the module docstring)."""
    summary = profile_summary(records, ceilings)
    step: StepTiming = summary["step"]
    rows = [f"{'op':<22}{'phase':<10}{'calls':>6}{'ms':>10}{'% step':>8}{'GFLOP/s':>10}"
            f"{'% GEMM':>8}{'GB/s':>9}{'% copy':>8}"]
    for r in summary["ops"]:
        rows.append(f"{r['op']:<22}{r['phase']:<10}{r['calls']:>6}{r['ms']:>10.3f}"
                    f"{_pct(r['step_fraction']):>8}{r['gflops']:>10.2f}"
                    f"{_pct(r['gemm_fraction']):>8}{r['gbps']:>9.2f}{_pct(r['copy_fraction']):>8}")
    wall_ms, op_ms = step.wall_seconds * 1e3, step.op_seconds * 1e3
    rows.append(f"{'array maths':<38}{op_ms:>10.3f}{_pct(op_ms / wall_ms if wall_ms else 0):>8}")
    rows.append(f"engine overhead: {100 * step.overhead_fraction:.1f} % of step "
                f"({wall_ms - op_ms:.3f} of {wall_ms:.3f} ms wall: tape, dispatch, Python)")
    f = step.flops
    rows.append(f"step: {f['total'] / 1e9:.4g} GFLOP (fwd {f['forward'] / 1e9:.4g}, bwd "
                f"{f['backward'] / 1e9:.4g}, opt {f['optimizer'] / 1e9:.2g}) in "
                f"{wall_ms:.3f} ms: {step.gflops:.2f} GFLOP/s ({_pct(step.gemm_fraction)} of GEMM)")
    rows.append(f"      {step.bytes / 1e6:.4g} MB read and written: {step.gbps:.2f} GB/s "
                f"({_pct(step.copy_fraction)} of copy)")
    if step.ceilings is not None:
        c = step.ceilings
        threads = f", {c.threads} thread{'s' * (c.threads > 1)}" if c.threads else ""
        rows.append(f"ceilings ({c.device}{threads}): GEMM {c.gemm_gflops:.1f} GFLOP/s "
                    f"(n={c.gemm_size}), copy {c.copy_gbps:.1f} GB/s")
        if any((r["gemm_fraction"] or 0) > 1.05 for r in summary["ops"]):
            rows.append("an op beat the GEMM ceiling: it was measured on a busy machine; "
                        "tl.ceilings.get(refresh=True) measures again")
    return "\n".join(rows)


# --- Chrome / Perfetto trace -------------------------------------------------------------------
def chrome_trace(records: Records) -> dict[str, Any]:
    """The records as Trace Event Format JSON (chrome://tracing, https://ui.perfetto.dev): one
    complete event ("ph": "X", ts and dur in microseconds from the region's start) per op
    forward, op backward and optimizer update, named by the op with the phase as category and
    the shapes, FLOPs and bytes as args; around them one event per run of one phase (cat
    "phase") and one for the whole region (cat "step"), so the events nest in time."""
    pid = os.getpid()
    ops = []
    for r in records:
        ops.append({
            "name": r["op"], "cat": r["phase"], "ph": "X", "pid": pid, "tid": 0,
            "ts": round(r.get("start_ms", 0.0) * 1e3, 3), "dur": round(r["ms"] * 1e3, 3),
            "args": {"in_shapes": [list(s) for s in r["in_shapes"]],
                     "out_shape": list(r["out_shape"]), "flops": r["flops"],
                     "bytes": r.get("bytes", 0), "saved_bytes": r.get("saved_bytes", 0),
                     "device": r.get("device", "?")},
        })
    ops.sort(key=lambda e: e["ts"])
    nested: list[dict[str, Any]] = []  # each phase run, then its ops: parents come first
    phase: dict[str, Any] | None = None
    for e in ops:
        if phase is None or phase["name"] != e["cat"]:
            phase = {"name": e["cat"], "cat": "phase", "ph": "X", "pid": pid, "tid": 0,
                     "ts": e["ts"], "dur": 0.0}
            nested.append(phase)
        phase["dur"] = e["ts"] + e["dur"] - phase["ts"]
        nested.append(e)
    end = max((e["ts"] + e["dur"] for e in ops), default=0.0)
    wall_us = max(round(getattr(records, "wall_seconds", 0.0) * 1e6, 3), end)
    flops = step_flops(records)
    region = {"name": "profile", "cat": "step", "ph": "X", "pid": pid, "tid": 0, "ts": 0.0,
              "dur": wall_us, "args": {"flops": flops}}
    meta = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
             "args": {"name": "tinygrad_lab"}},
            {"name": "thread_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "ops"}}]
    return {"traceEvents": [*meta, region, *nested], "displayTimeUnit": "ms"}


def export_chrome_trace(records: Records, path: str | os.PathLike[str]) -> Path:
    """Write chrome_trace(records) as JSON to `path` (a temporary file renamed into place, so
    a crash leaves no half-written trace); returns the path."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(chrome_trace(records), f)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
