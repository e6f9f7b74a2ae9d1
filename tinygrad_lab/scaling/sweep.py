"""`tinygrad-lab bench scaling`: every size of the chosen families, each framework in its own
process (so peak memory and RSS belong to that size), ours and PyTorch alternating size by size
(and round by round), rows written after each size, fits and plots at the end.

    settings = SweepSettings(families=("mlp",), quick=True, out=Path("results"))
    rows = run_sweep(settings)          # writes scaling.json, scaling.csv, scaling.md, *.png

An interrupted sweep keeps every finished row; `resume=True` skips the rows already in
scaling.json whose size and measurement settings match.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinygrad_lab.scaling.grids import FAMILIES, Size, grid

CATEGORIES = ("parameters", "gradients", "optimizer_state", "activations", "temporaries")
HELD = ("parameters", "gradients", "optimizer_state", "activations")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "TINYGRAD_LAB_THREADS")
JSON_NAME, CSV_NAME, MD_NAME = "scaling.json", "scaling.csv", "scaling.md"


@dataclass
class SweepSettings:
    """What to run and how long to time each size. `quick`: three small sizes per family, one
    round, a few steps."""

    families: tuple[str, ...] = FAMILIES
    quick: bool = False
    device: str = "cpu"
    reference: bool = False  # ours on the NumPy reference path (TINYGRAD_LAB_KERNELS=0)
    threads: int = 2
    torch: bool = True  # run PyTorch beside ours when it is installed
    rounds: int | None = None  # ours/PyTorch alternations per size (default 2, quick 1)
    out: Path | None = None
    resume: bool = False
    plots: bool = True
    progress: bool = True
    timeout_s: float = 600.0
    timing: dict[str, float] = field(default_factory=dict)  # warmup, min_steps, ... overrides

    def __post_init__(self) -> None:
        self.families = tuple(self.families)
        for family in self.families:
            if family not in FAMILIES:
                raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
        if self.threads < 1:
            raise ValueError("--threads must be >= 1")
        if self.rounds is None:
            self.rounds = 1 if self.quick else 2
        if self.rounds < 1:
            raise ValueError("--rounds must be >= 1")
        # timed steps: at least min_steps and min_time seconds (fast steps: many samples for
        # the median), at most max_steps
        base = ({"warmup": 1, "min_steps": 3, "max_steps": 200, "min_time": 0.2} if self.quick
                else {"warmup": 2, "min_steps": 5, "max_steps": 400, "min_time": 0.6})
        self.timing = {**base, **self.timing}
        if self.out is None:
            self.out = default_out(self.quick, self.device, self.reference)
        self.out = Path(self.out)

    def signature(self) -> dict[str, Any]:
        """The settings a finished row must share to be kept by --resume."""
        return {"device": self.device, "reference": self.reference, "threads": self.threads,
                "rounds": self.rounds, "timing": self.timing}


def default_out(quick: bool, device: str = "cpu", reference: bool = False) -> Path:
    """benchmarks/results/scaling[-quick][-DEVICE][-reference] in a source checkout, else the
    same name with "scaling-results" in the current directory."""
    name = "scaling" + ("-quick" if quick else "")
    if device != "cpu":
        name += "-" + device.replace(":", "")
    if reference:
        name += "-reference"
    repo = Path(__file__).resolve().parents[2]
    if (repo / "benchmarks" / "bench_train.py").is_file():
        return repo / "benchmarks" / "results" / name
    return Path.cwd() / name.replace("scaling", "scaling-results", 1)


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# --- children ----------------------------------------------------------------------------------
def run_child(args: list[str], settings: SweepSettings) -> dict[str, Any]:
    """`python -m tinygrad_lab.scaling.child ARGS` with every thread variable pinned; its JSON."""
    env = dict(os.environ)
    env.update({var: str(settings.threads) for var in THREAD_VARS})
    if settings.reference:
        env["TINYGRAD_LAB_KERNELS"] = "0"
    command = [sys.executable, "-m", "tinygrad_lab.scaling.child", *args]
    proc = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=settings.timeout_s)
    if proc.returncode == -signal.SIGINT:  # Ctrl-C reached the child before this process
        raise KeyboardInterrupt
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"child {' '.join(args[:4])} failed ({proc.returncode}): {tail}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"child {' '.join(args[:4])} printed no JSON line")


def child_args(size: Size, framework: str, settings: SweepSettings) -> list[str]:
    t = settings.timing
    return ["--framework", framework, "--family", size.family, "--config", size.config_json(),
            "--batch", str(size.batch), "--context", str(size.context), "--device",
            settings.device, "--threads", str(settings.threads), "--warmup",
            str(int(t["warmup"])), "--min-steps", str(int(t["min_steps"])), "--max-steps",
            str(int(t["max_steps"])), "--min-time", str(t["min_time"])]


def measure(size: Size, settings: SweepSettings, with_torch: bool,
            bar: Any = None) -> dict[str, Any]:
    """One size: `rounds` alternations of ours and PyTorch (the order flips each round, so a
    drifting machine favours neither); the row. `bar` (tqdm) advances once per child."""
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    assert settings.rounds is not None
    for r in range(settings.rounds):
        order = ["ours", "torch"] if with_torch else ["ours"]
        for framework in order if r % 2 == 0 else order[::-1]:
            if bar is not None:
                bar.set_postfix_str(f"{size.key} {framework}")
            result = run_child(child_args(size, framework, settings), settings)
            (ours if framework == "ours" else theirs).append(result)
            if bar is not None:
                bar.update(1)
    row = make_row(size, settings, ours, theirs)
    row["load_1min"] = load  # above ~1 (the sweep's own child), others shared the cores
    return row


def make_row(size: Size, settings: SweepSettings, ours: list[dict[str, Any]],
             theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Flatten one size's child results: step times are the median of the rounds' medians,
    the ours/PyTorch ratios the median of the per-round ratios; memory from the first round."""
    first = ours[0]
    items = size.items_per_step
    row: dict[str, Any] = {
        "key": size.key, "family": size.family, "axis": size.axis, "value": size.value,
        "batch": size.batch, "context": size.context, "items_per_step": items,
        "unit": "tokens/s" if size.family == "gpt" else "samples/s", "params": first["params"],
        "flops_forward": first["flops_forward"], "flops_backward": first["flops_backward"],
        "flops_optimizer": first.get("flops_optimizer", 0), "flops_step": first["flops_step"],
        "device": settings.device,
        "path": "reference" if settings.reference else "kernels", "threads": first["threads"],
        "rounds": len(ours),
    }
    _framework_columns(row, "ours", ours, first["flops_step"], items)
    for kind in ("", "at_peak_"):  # each category's own peak; its share at the total's peak
        for cat in CATEGORIES:
            row[f"ours_mem_{kind}{cat}"] = first.get(f"mem_{kind}{cat}")
            row[f"pred_{kind}{cat}"] = first.get(f"pred_{kind}{cat}")
    row["ours_mem_peak"] = first.get("mem_peak")
    row["pred_total"] = first.get("pred_total")
    row["memory_source"] = "tl.memory" if first.get("mem_peak") is not None else "missing"
    if theirs:
        _framework_columns(row, "torch", theirs, first["flops_step"], items)
        row["torch_params"] = theirs[0]["params"]
        row["torch_mem_peak"] = theirs[0].get("mem_peak")
        row["speed_ratio"] = statistics.median(t["step_s"] / o["step_s"]
                                               for o, t in zip(ours, theirs))
        row["memory_ratio"] = row["ours_held_total"] / row["torch_held_total"]
    row["config"] = json.dumps(size.config, sort_keys=True)
    row["signature"] = settings.signature()
    row["ops"] = first.get("ops", [])
    return row


def _framework_columns(row: dict[str, Any], name: str, results: list[dict[str, Any]],
                       flops: int, items: int) -> None:
    step = statistics.median(r["step_s"] for r in results)
    row[f"{name}_cold_s"] = statistics.median(r["cold_s"] for r in results)
    row[f"{name}_step_s"] = step
    row[f"{name}_items_per_s"] = items / step
    row[f"{name}_gflops"] = flops / step / 1e9
    for cat in HELD:
        row[f"{name}_held_{cat}"] = results[0][f"held_{cat}"]
    row[f"{name}_held_total"] = sum(results[0][f"held_{cat}"] for cat in HELD)
    row[f"{name}_rss_peak"] = max(r["rss_peak"] for r in results)


# --- files -------------------------------------------------------------------------------------
def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """The rows as CSV: every scalar column (the per-op table stays in the JSON)."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [k for k, v in row.items() if k not in columns
                    and not isinstance(v, (list, dict))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


def load_rows(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(meta, rows) of the scaling.json in `out`; empty when there is none or it is unreadable."""
    path = out / JSON_NAME
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, []
    return payload.get("meta", {}), list(payload.get("rows", []))


def write_results(settings: SweepSettings, meta: dict[str, Any], rows: list[dict[str, Any]],
                  summary: dict[str, Any] | None = None) -> None:
    assert settings.out is not None
    payload = {"benchmark": "scaling", "meta": meta, "rows": rows, "summary": summary or {}}
    atomic_write(settings.out / JSON_NAME, json.dumps(payload, indent=1, default=str))
    atomic_write(settings.out / CSV_NAME, csv_text(rows))


def _meta(settings: SweepSettings, with_torch: bool) -> dict[str, Any]:
    from tinygrad_lab import __version__

    meta: dict[str, Any] = {
        "tinygrad_lab": __version__, "git_sha": _git_sha(), "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "settings": settings.signature(),
        "quick": settings.quick, "families": list(settings.families), "torch": with_torch,
        "data": "synthetic batches (random inputs and labels): a step costs the same on them",
    }
    if with_torch:
        import importlib.metadata

        meta["torch_version"] = importlib.metadata.version("torch")
    return meta


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- the sweep ---------------------------------------------------------------------------------
def run_sweep(settings: SweepSettings, log: Any = print) -> list[dict[str, Any]]:
    """Run (or resume) the sweep, writing rows as they finish; then fits, markdown and plots."""
    from tqdm.auto import tqdm

    from tinygrad_lab.scaling import report

    assert settings.out is not None
    # PyTorch knows cpu and cuda; the stand-in device (tinygrad_lab.testing.standin) is ours only
    with_torch = settings.torch and torch_available() and not settings.device.startswith("standin")
    meta = _meta(settings, with_torch)
    sizes = [s for family in settings.families for s in grid(family, settings.quick)]
    kept: list[dict[str, Any]] = []
    if settings.resume:
        old_meta, old = load_rows(settings.out)
        kept = [r for r in old if _matches(r, sizes, settings, with_torch)]
        keys = {s.key for s in sizes}  # other families' rows, same settings: kept alongside
        others = [r for r in old if r.get("key") not in keys and r.get("signature")
                  == json.loads(json.dumps(settings.signature()))]
        meta["ceilings"] = old_meta.get("ceilings")
        if kept or others:  # the rows kept were measured then, with that revision
            meta["resumed"] = [*old_meta.get("resumed", []), meta["date"]]
            meta["date"], meta["git_sha"] = old_meta.get("date"), old_meta.get("git_sha")
            log(f"resuming: {len(kept)} of {len(sizes)} sizes already in "
                f"{settings.out / JSON_NAME}" + (f" (and {len(others)} of other families)"
                                                 if others else ""))
        kept += others
    done = {r["key"] for r in kept}
    todo = [s for s in sizes if s.key not in done]
    rows = list(kept)
    runs = len(todo) * settings.rounds * (2 if with_torch else 1)  # type: ignore[operator]
    bar = tqdm(total=runs, desc="scaling", unit="run", disable=not settings.progress or not runs,
               dynamic_ncols=True)
    failures = 0
    order = {s.key: i for i, s in enumerate(sizes)}
    try:
        for size in todo:
            try:
                row = measure(size, settings, with_torch, bar)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                failures += 1
                bar.write(f"{size.key}: {e}")
                continue
            rows = [r for r in rows if r["key"] != row["key"]] + [row]
            rows.sort(key=lambda r: order.get(r["key"], len(order)))
            write_results(settings, meta, rows)
            bar.write(report.row_line(row))
    except KeyboardInterrupt:
        bar.close()
        write_results(settings, meta, rows)
        log(f"interrupted: {len(rows)} rows kept in {settings.out / JSON_NAME}; "
            "run again with --resume to finish")
        raise
    bar.close()
    if meta.get("ceilings") is None:
        meta["ceilings"] = _ceilings(settings)
    summary = report.summarize(rows)
    write_results(settings, meta, rows, summary)
    atomic_write(settings.out / MD_NAME, report.markdown(meta, rows, summary))
    if settings.plots:
        from tinygrad_lab.scaling import plot

        try:
            for path in plot.plot_all(rows, meta, settings.out):
                log(f"wrote {path}")
        except plot.MissingMatplotlib as e:
            log(str(e))
    if failures:
        log(f"{failures} size(s) failed; run again with --resume to retry them")
    return rows


def _matches(row: dict[str, Any], sizes: list[Size], settings: SweepSettings,
             with_torch: bool) -> bool:
    """A finished row that --resume keeps: same size (config, batch, context), same
    measurement settings, and a PyTorch column when this sweep runs PyTorch."""
    by_key = {s.key: s for s in sizes}
    size = by_key.get(row.get("key", ""))
    if size is None or row.get("signature") != json.loads(json.dumps(settings.signature())):
        return False
    if (row.get("config") != json.dumps(size.config, sort_keys=True)
            or row.get("batch") != size.batch or row.get("context") != size.context):
        return False
    return not with_torch or row.get("torch_step_s") is not None


def _ceilings(settings: SweepSettings) -> dict[str, Any] | None:
    """The device's measured ceilings (GEMM GFLOP/s, copy GB/s) from a pinned child, for the
    roofline; None when the engine has no `tl.ceilings`."""
    try:
        return run_child(["--framework", "ceilings", "--family", "-", "--config", "{}",
                          "--batch", "1", "--device", settings.device, "--threads",
                          str(settings.threads)], settings) or None
    except (RuntimeError, subprocess.TimeoutExpired):
        return None


__all__ = ["SweepSettings", "atomic_write", "csv_text", "default_out", "load_rows", "make_row",
           "measure", "run_child", "run_sweep", "write_results"]
