"""Shared benchmark plumbing: thread pinning, medians after warm-up, JSON + markdown output.

Each framework runs in its own subprocess with the same thread count, so one framework's
allocator or thread-pool settings never leak into another's figures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def pin_threads(n: int) -> None:
    """Set every thread knob before NumPy / Numba / torch load their pools."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "TINYGRAD_LAB_THREADS"):
        os.environ[var] = str(n)


def median_seconds(fn: Callable[[], Any], warmup: int, repeats: int,
                   min_time: float = 0.0) -> float:
    """Median wall time of fn() after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) > 100 * max(repeats, 1):
            break
    return statistics.median(times)


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def torch_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except ImportError:
        return False


@dataclass
class Report:
    """One benchmark run: settings, rows, and where they were written."""

    name: str
    threads: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def write(self, columns: list[str]) -> tuple[Path, Path]:
        RESULTS.mkdir(parents=True, exist_ok=True)
        meta = {
            "git_sha": git_sha(), "threads": self.threads, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), **self.meta,
        }
        payload = {"benchmark": self.name, "meta": meta, "rows": self.rows, "notes": self.notes}
        json_path = RESULTS / f"{self.name}.json"
        md_path = RESULTS / f"{self.name}.md"
        _atomic_write(json_path, json.dumps(payload, indent=2, default=str))
        lines = [f"## {self.name}", "",
                 f"threads: {self.threads}; git {meta['git_sha']}; {meta['date']}; medians after "
                 "warm-up", "",
                 "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
        lines += [""] + [f"- {n}" for n in self.notes]
        _atomic_write(md_path, "\n".join(lines) + "\n")
        return json_path, md_path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


_FROM_TREE = """
import importlib.util, runpy, sys
tree, script = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
spec = importlib.util.spec_from_file_location(
    "tinygrad_lab.kernels", tree + "/kernels/__init__.py",
    submodule_search_locations=[tree + "/kernels"])
kernels = importlib.util.module_from_spec(spec)
sys.modules["tinygrad_lab.kernels"] = kernels
spec.loader.exec_module(kernels)
import tinygrad_lab
tinygrad_lab.kernels = kernels
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""
"""Runs a benchmark script of another checkout with that checkout's tinygrad_lab and kernels
(its kernels/ folder mapped to tinygrad_lab.kernels, as the package does), whatever is
installed."""


def run_child(script: str, args: list[str], threads: int, env: dict[str, str] | None = None,
              timeout: float = 900, tree: Path | None = None) -> dict[str, Any]:
    """Run `python benchmarks/<script> --child ...` pinned to `threads`; parse its JSON line.

    With `tree` (another checkout, e.g. `git worktree add ../base HEAD~1`), run that checkout's
    script on that checkout's code: a same-run comparison between two revisions."""
    child_env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "TINYGRAD_LAB_THREADS"):
        child_env[var] = str(threads)
    child_env.update(env or {})
    if tree is None:
        command = [sys.executable, str(ROOT / "benchmarks" / script), "--child", *args]
    else:
        tree = tree.resolve()
        command = [sys.executable, "-c", _FROM_TREE, str(tree),
                   str(tree / "benchmarks" / script), "--child", *args]
    proc = subprocess.run(command, capture_output=True, text=True, env=child_env,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{script} {' '.join(args)} printed no JSON result:\n{proc.stdout[-2000:]}")


def result_line(**values: Any) -> None:
    print(json.dumps(values, default=str), flush=True)


__all__ = ["Report", "asdict", "median_seconds", "pin_threads", "result_line", "run_child",
           "torch_available"]
