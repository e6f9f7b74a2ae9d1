"""The sweep's plots (matplotlib, the optional `plot` extra, imported only here and only when a
plot is drawn):

- throughput.png: samples/s (tokens/s) against parameters, ours solid and PyTorch dashed, one
  line per model-size axis, one panel per family (log-log);
- memory.png: one panel per model-size axis: ours' measured peak (`tl.memory`) stacked by
  category (each category's bytes at the moment the total peaked, so the stack's top is the
  peak) against parameters, the predicted peak (`tl.memory.estimate`) as a black line and
  PyTorch's held bytes (parameters, gradients, Adam state, saved for backward) dashed (log-log);
- roofline.png: every op of every size as a point (arithmetic intensity, achieved GFLOP/s)
  under the measured ceilings: GEMM GFLOP/s flat, copy GB/s x intensity sloped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinygrad_lab.scaling.grids import MODEL_AXES

HELD = ("parameters", "gradients", "optimizer_state", "activations")
MEASURED = (*HELD, "temporaries")
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


class MissingMatplotlib(ImportError):
    """matplotlib is not installed: the plots need the `plot` extra."""


def _figure(panels: int) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingMatplotlib("plots need matplotlib: pip install 'tinygrad_lab[plot]' (the "
                                "sweep's CSV and JSON were written without it)") from None
    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=90, layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(panels)]


def _log_axes(ax: Any, **labels: str) -> None:
    """Log-log axes with labels on the decades only (minor labels overlap on short ranges)."""
    from matplotlib.ticker import NullFormatter

    ax.set(xscale="log", yscale="log", **labels)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", alpha=0.3)


def _families(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["family"] for r in rows))


def _axis_rows(rows: list[dict[str, Any]], family: str, axis: str) -> list[dict[str, Any]]:
    mine = [r for r in rows if r["family"] == family and r["axis"] in ("base", axis)]
    return sorted(mine, key=lambda r: r["params"])


def throughput(rows: list[dict[str, Any]], path: Path) -> Path:
    families = _families(rows)
    fig, axes = _figure(len(families))
    for ax, family in zip(axes, families):
        present = [a for a in MODEL_AXES if any(r["family"] == family and r["axis"] == a
                                                for r in rows)]
        for color, axis in zip(COLORS, present):
            mine = _axis_rows(rows, family, axis)
            x = [r["params"] for r in mine]
            ax.plot(x, [r["ours_items_per_s"] for r in mine], "o-", color=color,
                    label=f"ours, {axis}")
            theirs = [(r["params"], r["torch_items_per_s"]) for r in mine
                      if r.get("torch_items_per_s")]
            if theirs:
                ax.plot(*zip(*theirs), "s--", color=color, alpha=0.8,
                        label=f"PyTorch, {axis}")
        unit = next(r["unit"] for r in rows if r["family"] == family)
        _log_axes(ax, xlabel="parameters", ylabel=unit, title=f"{family}: throughput")
        ax.legend(fontsize=7)
    fig.savefig(path)
    return path


def memory(rows: list[dict[str, Any]], path: Path) -> Path:
    """One panel per model-size axis (an axis and the base row: one knob moves at a time)."""
    panels = [(f, a) for f in _families(rows) for a in MODEL_AXES
              if any(r["family"] == f and r["axis"] == a for r in rows)]
    fig, axes = _figure(len(panels))
    for i, (ax, (family, axis)) in enumerate(zip(axes, panels)):
        mine = _axis_rows(rows, family, axis)
        x = [r["params"] for r in mine]
        measured = all(r.get("ours_mem_peak") for r in mine)
        cats = MEASURED if measured else HELD
        prefix = "ours_mem_at_peak_" if measured else "ours_held_"  # stacks sum to the peak
        stacks = [[(r.get(prefix + c) or 0) / 2**20 for r in mine] for c in cats]
        ax.stackplot(x, stacks, labels=[c.replace("_", " ") for c in cats], colors=COLORS,
                     alpha=0.75)
        if all(r.get("pred_total") for r in mine):
            ax.plot(x, [r["pred_total"] / 2**20 for r in mine], "k-", lw=2,
                    label="predicted peak")
        if all(r.get("torch_held_total") for r in mine):
            ax.plot(x, [r["torch_held_total"] / 2**20 for r in mine], "k--", lw=1,
                    label="PyTorch held (params, grads, Adam, saved)")
        what = "peak" if measured else "held"
        _log_axes(ax, xlabel="parameters", ylabel=f"MiB ({what}, by category)",
                  title=f"{family}: memory, {axis} varies")
        if i == 0:
            ax.legend(fontsize=6, loc="upper left", framealpha=0.85)
    fig.savefig(path)
    return path


def roofline(rows: list[dict[str, Any]], ceilings: dict[str, Any] | None, path: Path) -> Path:
    fig, (ax,) = _figure(1)
    fig.set_size_inches(6.4, 4.4)
    lo, hi = float("inf"), 0.0
    for color, family in zip(COLORS, _families(rows)):
        for phase, marker in (("forward", "o"), ("backward", "^")):
            pts = [(f / b, f / (ms * 1e6)) for r in rows if r["family"] == family
                   for _op, ph, _calls, f, b, ms in r.get("ops", []) if ph == phase and b > 0]
            if pts:
                lo, hi = min(lo, *(p[0] for p in pts)), max(hi, *(p[0] for p in pts))
                ax.scatter(*zip(*pts), s=10, marker=marker, color=color, alpha=0.5,
                           label=f"{family} {phase}")
    if ceilings and ceilings.get("gemm_gflops") and ceilings.get("copy_gbps") and hi > 0:
        import numpy as np

        xs = np.logspace(np.log10(min(lo, 0.1)), np.log10(max(hi, 100)), 200)
        roof = np.minimum(ceilings["gemm_gflops"], ceilings["copy_gbps"] * xs)
        ax.plot(xs, roof, "k-", lw=2, label=f"ceiling: {ceilings['gemm_gflops']:.0f} GFLOP/s, "
                f"{ceilings['copy_gbps']:.0f} GB/s")
    _log_axes(ax, xlabel="arithmetic intensity (FLOP/byte)", ylabel="achieved GFLOP/s",
              title="roofline: ours, every op of every size")
    ax.legend(fontsize=7)
    fig.savefig(path)
    return path


def plot_all(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path) -> list[Path]:
    """All three plots into `out`; raises MissingMatplotlib without matplotlib."""
    rows = [r for r in rows if r.get("ours_step_s")]
    if not rows:
        return []
    return [throughput(rows, out / "throughput.png"), memory(rows, out / "memory.png"),
            roofline(rows, meta.get("ceilings"), out / "roofline.png")]


__all__ = ["MissingMatplotlib", "memory", "plot_all", "roofline", "throughput"]
