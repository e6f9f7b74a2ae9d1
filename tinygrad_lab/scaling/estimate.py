"""`tinygrad-lab estimate MODEL --batch-size B --dataset-size N`: how much memory one training
step takes (by category, `tl.memory.estimate`) and how long an epoch takes, from the cost model
fitted on a scaling sweep measured on this machine (step = overhead + FLOPs / rate), printed
with the measurement it rests on.

The model's FLOPs per step are counted, not guessed: one profiled step at batch 1 and one at
batch 2, extended linearly to batch B (every count of these models is linear in the batch).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinygrad_lab.scaling.grids import FAMILIES, GRIDS

ALIASES = {"mnist-mlp": "mlp", "mnist-cnn": "cnn", "shakespeare-gpt": "gpt"}


@dataclass
class Plan:
    """What `estimate` computes for one model: sizes, FLOPs, memory, and (with a sweep) time."""

    family: str
    config: dict[str, Any]
    params: int
    batch: int
    context: int
    flops: dict[str, float]  # per step at the batch: forward, backward, optimizer, total
    memory: dict[str, tuple[int, int]] | None  # category -> (own peak, at the total's peak)
    step_s: float | None = None
    epoch_s: float | None = None
    steps_per_epoch: int = 0
    basis: list[str] | None = None  # the lines that say what the time rests on


def parse_settings(family: str, pairs: list[str]) -> dict[str, Any]:
    """The family's base config of the default sweep with KEY=VALUE overrides (a value with
    commas is a tuple: hidden=1024,1024)."""
    config = dict(GRIDS[family].base)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in config:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(sorted(config))}")
        values = [json.loads(v) for v in raw.split(",") if v != ""]
        config[key] = values if isinstance(config[key], list) else values[0]
    if family == "gpt" and config["d_model"] % config["num_heads"]:
        raise ValueError(f"d_model {config['d_model']} is not divisible by num_heads "
                         f"{config['num_heads']}: pass --set num_heads=...")
    return config


def count_flops(family: str, config: dict[str, Any], batch: int, context: int,
                device: str) -> dict[str, float]:
    """FLOPs of one training step at `batch`, from profiled steps at batch 1 and 2."""
    import tinygrad_lab as tl
    from tinygrad_lab.scaling.child import _flops
    from tinygrad_lab.scaling.workloads import build

    counts = []
    for b in (1, 2):
        work = build(family, config, b, context, device)
        with tl.profile() as records:
            work.step()
        counts.append(_flops(records))
    return {k: counts[0][k] + (counts[1][k] - counts[0][k]) * (batch - 1) for k in counts[0]}


def predict_memory(family: str, config: dict[str, Any], batch: int, context: int,
                   device: str) -> dict[str, tuple[int, int]] | None:
    """tl.memory.estimate of one Adam training step; None when the engine has no estimate."""
    try:
        from tinygrad_lab import memory
    except ImportError:
        return None
    from tinygrad_lab.scaling.workloads import build

    work = build(family, config, 1, context, device)
    est = memory.estimate(work.model, work.input_shape, work.optimizer, batch,
                          work.input_dtype)
    at_peak = getattr(est, "at_peak", {})
    out = {k: (int(v), int(at_peak.get(k, v))) for k, v in est.bytes.items()}
    out["total"] = (int(est.total), int(est.total))
    return out


def load_sweep(results: list[Path]) -> tuple[Path, dict[str, Any]] | None:
    for folder in results:
        path = folder / "scaling.json"
        if path.is_file():
            return path, json.loads(path.read_text())
    return None


def time_from_sweep(plan: Plan, path: Path, payload: dict[str, Any], dataset: int) -> None:
    """Fill the plan's step and epoch time from the sweep's fit for its family (ours)."""
    meta, summary = payload.get("meta", {}), payload.get("summary", {})
    fits = (summary.get(plan.family) or {}).get("ours")
    if not fits or "rate_gflops" not in fits:
        plan.basis = [f"{path} has no fit for {plan.family}: run `tinygrad-lab bench scaling "
                      f"--families {plan.family}`"]
        return
    overhead, rate = fits["overhead_ms"] / 1e3, fits["rate_gflops"] * 1e9
    plan.step_s = max(overhead, 0.0) + plan.flops["total"] / rate
    plan.steps_per_epoch = math.ceil(dataset / plan.batch)
    plan.epoch_s = plan.step_s * plan.steps_per_epoch
    rows = [r for r in payload.get("rows", []) if r["family"] == plan.family
            and r.get("ours_step_s")]
    s = meta.get("settings", {})
    lo, hi = min(r["flops_step"] for r in rows), max(r["flops_step"] for r in rows)
    near = min(rows, key=lambda r: abs(math.log(r["flops_step"] / plan.flops["total"])))
    inside = "inside" if lo <= plan.flops["total"] <= hi else "OUTSIDE (extrapolated)"
    fitted = max(overhead, 0.0) + near["flops_step"] / rate
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:  # not under the current directory
        shown = path
    plan.basis = [
        f"measured: {shown} ({meta.get('date')}, git {meta.get('git_sha')}, device "
        f"{s.get('device')}, {'reference path' if s.get('reference') else 'kernels'}, "
        f"{s.get('threads')} threads, synthetic batches)",
        f"fit over {fits['rows']} {plan.family} sizes: overhead {fits['overhead_ms']:.3g} ms + "
        f"FLOPs / {fits['rate_gflops']:.3g} GFLOP/s; measured steps span {lo / 1e9:.3g}-"
        f"{hi / 1e9:.3g} GFLOP, this one ({plan.flops['total'] / 1e9:.3g} GFLOP) is {inside}",
        f"nearest measured size: {near['key']} ({near['flops_step'] / 1e9:.3g} GFLOP): "
        f"{near['ours_step_s'] * 1e3:.3g} ms measured, {fitted * 1e3:.3g} ms by the fit",
    ]


def plan(model: str, batch: int, dataset: int, device: str = "cpu",
         settings: list[str] | None = None, results: list[Path] | None = None) -> Plan:
    family = ALIASES.get(model, model)
    if family not in FAMILIES:
        raise ValueError(f"unknown model {model!r}; choose from "
                         f"{', '.join([*FAMILIES, *ALIASES])}")
    if batch < 1 or dataset < 1:
        raise ValueError("--batch-size and --dataset-size must be >= 1")
    config = parse_settings(family, settings or [])
    context = int(config["block_size"]) if family == "gpt" else 1
    from tinygrad_lab.scaling.workloads import build_model

    params = sum(p.size for p in build_model(family, config).parameters())
    out = Plan(family, config, params, batch, context,
               count_flops(family, config, batch, context, device),
               predict_memory(family, config, batch, context, device))
    found = load_sweep(results or [])
    if found is None:
        where = ", ".join(str(r) for r in results or []) or "(none given)"
        out.basis = [f"no scaling sweep in {where}: run `tinygrad-lab bench scaling "
                     f"--families {family}` (about 15 minutes; --quick: 2) for the time"]
    else:
        time_from_sweep(out, *found, dataset)
    return out


def _mib(n: float) -> str:
    return f"{n / 2**20:10.2f} MiB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render(p: Plan, dataset: int) -> str:
    unit = f"{p.batch} x {p.context} tokens" if p.family == "gpt" else f"{p.batch} samples"
    f = p.flops
    lines = [f"{p.family} {json.dumps(p.config)}",
             f"{p.params:,} parameters; batch {unit}; Adam; float32",
             f"FLOPs per step: {f['total'] / 1e9:.4g} GFLOP (forward {f['forward'] / 1e9:.3g}, "
             f"backward {f['backward'] / 1e9:.3g}, optimizer {f.get('optimizer', 0) / 1e9:.3g}),"
             " counted on profiled steps at batch 1 and 2", ""]
    if p.memory is None:
        lines.append("predicted memory: unavailable (this engine has no tl.memory.estimate)")
    else:
        lines.append("predicted memory of one training step (tl.memory.estimate):")
        lines.append(f"  {'':<16}{'own peak':>14}{'at the peak':>14}")
        lines += [f"  {k:<16}{_mib(v[0])}{_mib(v[1])}" for k, v in p.memory.items()
                  if k != "total"]
        lines.append(f"  {'peak':<16}{'':>14}{_mib(p.memory['total'][1])}")
    lines.append("")
    if p.step_s is not None and p.epoch_s is not None:
        what = f"sequences of {p.context} tokens" if p.family == "gpt" else "samples"
        lines.append(f"time per step: {p.step_s * 1e3:.3g} ms; an epoch of {dataset:,} {what} "
                     f"= {p.steps_per_epoch:,} steps: {_duration(p.epoch_s)}")
    lines += p.basis or []
    return "\n".join(lines)


__all__ = ["ALIASES", "Plan", "count_flops", "parse_settings", "plan", "predict_memory",
           "render"]
