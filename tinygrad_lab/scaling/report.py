"""What a sweep's rows say: per family and framework the fitted cost model (overhead + FLOPs /
rate), the log-log exponents of time and memory against parameters, bytes per parameter,
activation bytes per sample, and the sizes where ours and PyTorch swap places; as a dict (in
scaling.json) and as markdown (scaling.md).
"""

from __future__ import annotations

import math
from typing import Any

from tinygrad_lab.scaling import fit
from tinygrad_lab.scaling.grids import MODEL_AXES

FRAMEWORKS = ("ours", "torch")
STATE = ("parameters", "gradients", "optimizer_state")
TIE = 0.03  # ratios within 3 % of 1 are ties, not crossings


def _ok(row: dict[str, Any], framework: str) -> bool:
    value = row.get(f"{framework}_step_s")
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def model_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose parameter count varies at the base batch and context."""
    return [r for r in rows if r["axis"] == "base" or r["axis"] in MODEL_AXES]


def _try(f: Any, *args: Any) -> Any:
    try:
        return f(*args)
    except ValueError:
        return None


def family_fits(rows: list[dict[str, Any]], framework: str) -> dict[str, Any] | None:
    """The fits of one family's rows for one framework (None without two measured rows)."""
    rows = [r for r in rows if _ok(r, framework)]
    if len(rows) < 2:
        return None
    sized = model_rows(rows)
    p = framework  # the column prefix
    out: dict[str, Any] = {"framework": framework, "rows": len(rows)}
    cost = _try(fit.overhead_rate, [r["flops_step"] for r in rows],
                [r[f"{p}_step_s"] for r in rows])
    if cost is not None:
        out["overhead_ms"] = cost.overhead_s * 1e3
        out["rate_gflops"] = cost.rate_flops / 1e9
        flops10 = cost.flops_where_overhead_is(0.1)
        out["flops_overhead_10pct"] = flops10
        flops_law = _try(fit.power_law, [r["params"] for r in sized],
                         [r["flops_step"] for r in sized])
        out["params_overhead_10pct"] = (flops_law.inverse(flops10)
                                        if flops_law and flops10 > 0 else 0.0)
    time_law = _try(fit.power_law, [r["params"] for r in sized], [r[f"{p}_step_s"] for r in sized])
    out["time_exponent"] = time_law.exponent if time_law else None
    mem_law = _try(fit.power_law, [r["params"] for r in sized],
                   [r[f"{p}_held_total"] for r in sized])
    out["memory_exponent"] = mem_law.exponent if mem_law else None
    out["bytes_per_param"] = _try(fit.through_origin, [r["params"] for r in rows],
                                  [sum(r[f"{p}_held_{c}"] for c in STATE) for r in rows])
    out["activation_bytes_per_sample"] = _per_sample(rows, f"{p}_held_activations")
    if framework == "ours":
        measured = [r for r in rows if r.get("ours_mem_peak") and r.get("pred_total")]
        if measured:
            errors = sorted(r["pred_total"] / r["ours_mem_peak"] for r in measured)
            out["predicted_over_measured"] = errors[len(errors) // 2]
    return out


def _per_sample(rows: list[dict[str, Any]], column: str) -> float | None:
    """Bytes per sample: the slope against batch along the batch axis when it was swept, else
    the base row's bytes / batch."""
    batch_rows = [r for r in rows if r["axis"] in ("base", "batch")]
    if len({r["batch"] for r in batch_rows}) >= 2:
        slope = _try(fit.linear, [r["batch"] for r in batch_rows],
                     [r[column] for r in batch_rows])
        if slope is not None:
            return slope[1]
    base = next((r for r in rows if r["axis"] == "base"), rows[0])
    return base[column] / base["batch"]


def crossover_sizes(rows: list[dict[str, Any]], column: str) -> dict[str, list[float]]:
    """Where an ours/PyTorch ratio crosses 1, along each axis (its rows and the base row): in
    parameters along the model-size axes, in the knob's value along batch and context; axes
    without a crossing are left out."""
    out: dict[str, list[float]] = {}
    for axis in dict.fromkeys(r["axis"] for r in rows if r["axis"] != "base"):
        line = [r for r in rows if r["axis"] in ("base", axis) and r.get(column)]
        x = "params" if axis in MODEL_AXES else "value"
        if len(line) >= 2:
            found = fit.crossovers([r[x] for r in line], [r[column] for r in line], TIE)
            if found:
                out[axis] = found
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{family: {"ours": fits, "torch": fits, "speed_crossovers": {axis: [x, ...]},
    "memory_crossovers": {axis: [x, ...]}}}."""
    out: dict[str, Any] = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        entry: dict[str, Any] = {f: family_fits(mine, f) for f in FRAMEWORKS}
        entry["speed_crossovers"] = crossover_sizes(mine, "speed_ratio")
        entry["memory_crossovers"] = crossover_sizes(mine, "memory_ratio")
        out[family] = entry
    return out


# --- text ----------------------------------------------------------------------------------
def _num(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1e3:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.2f}"


def row_line(row: dict[str, Any]) -> str:
    """One finished size, for the progress log."""
    line = (f"{row['key']:<22} {row['params']:>10,} params  ours {row['ours_step_s'] * 1e3:8.2f} ms"
            f" ({_num(row['ours_items_per_s'])} {row['unit']})")
    if row.get("torch_step_s"):
        line += (f"  PyTorch {row['torch_step_s'] * 1e3:8.2f} ms  ours/PyTorch speed "
                 f"{row['speed_ratio']:.2f} memory {row['memory_ratio']:.2f}")
    return line


ROW_COLUMNS = [
    ("size", lambda r: r["key"]), ("params", lambda r: f"{r['params']:,}"),
    ("batch x ctx", lambda r: f"{r['batch']}x{r['context']}"),
    ("GFLOP/step", lambda r: _num(r["flops_step"] / 1e9)),
    ("ours cold ms", lambda r: _num(r["ours_cold_s"] * 1e3)),
    ("ours ms", lambda r: _num(r["ours_step_s"] * 1e3)),
    ("PyTorch ms", lambda r: _num(r.get("torch_step_s") and r["torch_step_s"] * 1e3)),
    ("ours items/s", lambda r: _num(r["ours_items_per_s"])),
    ("ours GFLOP/s", lambda r: _num(r["ours_gflops"])),
    ("PyTorch GFLOP/s", lambda r: _num(r.get("torch_gflops"))),
    ("speed ours/PyTorch", lambda r: _num(r.get("speed_ratio"))),
    ("ours held MiB", lambda r: _mib(r["ours_held_total"])),
    ("PyTorch held MiB", lambda r: _mib(r.get("torch_held_total"))),
    ("memory ours/PyTorch", lambda r: _num(r.get("memory_ratio"))),
    ("ours peak MiB", lambda r: _mib(r.get("ours_mem_peak"))),
    ("predicted MiB", lambda r: _mib(r.get("pred_total"))),
    ("ours RSS MiB", lambda r: _mib(r["ours_rss_peak"])),
    ("PyTorch RSS MiB", lambda r: _mib(r.get("torch_rss_peak"))),
]

FIT_COLUMNS = [
    ("overhead ms", "overhead_ms"), ("rate GFLOP/s", "rate_gflops"),
    ("overhead < 10 % from params", "params_overhead_10pct"),
    ("time ~ params^k", "time_exponent"), ("memory ~ params^k", "memory_exponent"),
    ("bytes/param", "bytes_per_param"), ("activation bytes/sample", "activation_bytes_per_sample"),
    ("predicted/measured peak", "predicted_over_measured"),
]


def rows_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(name for name, _ in ROW_COLUMNS) + " |",
             "|" + "---|" * len(ROW_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(str(f(r)) for _, f in ROW_COLUMNS) + " |")
    return "\n".join(lines)


def fits_table(summary: dict[str, Any]) -> str:
    lines = ["| family | framework | " + " | ".join(n for n, _ in FIT_COLUMNS)
             + " | speed crossover (ours/PyTorch = 1) | memory crossover |",
             "|" + "---|" * (len(FIT_COLUMNS) + 4)]
    for family, entry in summary.items():
        for framework in FRAMEWORKS:
            fits = entry.get(framework)
            if not fits:
                continue
            cross = ["-", "-"]
            if framework == "ours":
                cross = [_crossings(entry[k]) for k in ("speed_crossovers", "memory_crossovers")]
            name = "ours" if framework == "ours" else "PyTorch"
            lines.append(f"| {family} | {name} | "
                         + " | ".join(_num(fits.get(k)) for _, k in FIT_COLUMNS)
                         + f" | {cross[0]} | {cross[1]} |")
    return "\n".join(lines)


def _crossings(by_axis: dict[str, list[float]]) -> str:
    """"d_model: 1,234,567 params; context: 143" or "none"."""
    parts = []
    for axis, values in by_axis.items():
        unit = " params" if axis in MODEL_AXES else ""
        parts.append(f"{axis}: " + ", ".join(f"{v:,.0f}{unit}" for v in values))
    return "; ".join(parts) or "none"


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    s = meta.get("settings", {})
    path = "NumPy reference path" if s.get("reference") else "kernels"
    head = [f"## Scaling sweep ({'quick' if meta.get('quick') else 'default'})", "",
            f"device {s.get('device')} ({path}), {s.get('threads')} threads; git "
            f"{meta.get('git_sha')}; {meta.get('date')}; PyTorch "
            f"{meta.get('torch_version', 'not run')}; {s.get('rounds')} round(s) per size, "
            "ours and PyTorch alternating, each in its own process; step times are medians "
            f"after warm-up; {meta.get('data')}.", ""]
    loads = [r["load_1min"] for r in rows if r.get("load_1min") is not None]
    if loads:
        head += [f"Load average (1 min) before each size: {min(loads):.2f}-{max(loads):.2f} "
                 f"(the sweep itself adds about 1; more than 1 on a {s.get('threads')}-thread run "
                 "means other processes shared the cores, and step times taken then are not to be "
                 "trusted).", ""]
    return "\n".join(head + [rows_table(rows), "", "### Fits", "", fits_table(summary), ""])


__all__ = ["family_fits", "fits_table", "markdown", "model_rows", "row_line", "rows_table",
           "summarize"]
