"""What this machine can do at best: a GEMM rate and a copy bandwidth, measured once and cached.

The profile table (tinygrad_lab/profiling.py) reports each op's GFLOP/s and GB/s as a share of
these two numbers, so "matmul at 60 %" and "relu at 80 % of copy" mean the same on any machine.

- `gemm_gflops`: float32 C = A @ B at a large square size (2 n^3 FLOPs), the best of a few runs,
  through the device's own matmul (BLAS on the CPU, cuBLAS through CuPy), with `threads` BLAS
  threads on the CPU. n doubles from 256 until one product takes 50 ms (at most 2048 on the CPU,
  8192 elsewhere).
- `copy_gbps`: a 64 MiB float32 copy, bytes read plus bytes written per second, the best of a
  few runs; on the CPU split over `threads` threads (NumPy's copy releases the GIL).

`get()` measures on first use (about a second) and caches the result per machine, device and
thread count in `ceilings.json` under $TINYGRAD_LAB_CACHE_DIR, else
$XDG_CACHE_HOME/tinygrad_lab, else ~/.cache/tinygrad_lab (never inside the package); the file
is replaced atomically. `get(refresh=True)` measures again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_lab import helpers

COPY_BYTES = 64 << 20
GEMM_TARGET_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class Ceilings:
    """A machine's best GEMM rate (GFLOP/s) and copy bandwidth (GB/s, read + write) on a device
    with a thread count (0 for a GPU, where host threads do not matter)."""

    gemm_gflops: float
    copy_gbps: float
    threads: int
    device: str
    gemm_size: int = 0
    """n of the n x n x n float32 GEMM that was measured."""
    measured: str = ""
    """When (ISO 8601, UTC)."""


def cache_path() -> Path:
    """The cache file: $TINYGRAD_LAB_CACHE_DIR, else $XDG_CACHE_HOME/tinygrad_lab, else
    ~/.cache/tinygrad_lab; then ceilings.json."""
    root = os.environ.get("TINYGRAD_LAB_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "tinygrad_lab")
    return Path(root) / "ceilings.json"


def measure(device: str = "cpu", threads: int | None = None) -> Ceilings:
    """Measure the GEMM rate and copy bandwidth of `device` now (about a second), with
    `threads` threads on the CPU (default: tl.helpers.num_threads())."""
    from tinygrad_lab.backends import get_backend

    if threads is not None and threads < 1:
        raise ValueError(f"thread count must be >= 1, got {threads}")
    backend = get_backend(device)
    on_cpu = backend.name == "cpu"
    threads = (threads or helpers.num_threads()) if on_cpu else 0
    xp = backend.xp
    if on_cpu:
        import threadpoolctl

        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            gflops, n = _gemm(xp, backend.synchronize, max_n=2048)
        gbps = _cpu_copy(threads)
    else:
        gflops, n = _gemm(xp, backend.synchronize, max_n=8192)
        gbps = _device_copy(xp, backend.synchronize)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return Ceilings(round(gflops, 2), round(gbps, 2), threads, backend.device, n, now)


def get(device: str = "cpu", threads: int | None = None, *, refresh: bool = False) -> Ceilings:
    """This machine's ceilings for `device` and `threads`, from the cache, else measured now
    and cached (see the module docstring)."""
    from tinygrad_lab.backends import get_backend

    if threads is not None and threads < 1:
        raise ValueError(f"thread count must be >= 1, got {threads}")
    backend = get_backend(device)
    threads = (threads or helpers.num_threads()) if backend.name == "cpu" else 0
    key = _key(backend, threads)
    path = cache_path()
    cache = _read(path)
    if not refresh and key in cache:
        try:
            return Ceilings(**cache[key])
        except TypeError:  # written by another version: measure again
            pass
    ceilings = measure(device, threads or None)
    cache = _read(path)  # another process may have written meanwhile
    cache[key] = dataclasses.asdict(ceilings)
    _write(path, cache)
    return ceilings


# --- measurements ------------------------------------------------------------------------------
def _best(run: Any, repeats: int, budget: float) -> float:
    """The shortest of up to `repeats` timed runs, stopping once `budget` seconds are spent."""
    best = float("inf")
    spent = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        if spent > budget:
            break
    return best


def _gemm(xp: Any, synchronize: Any, max_n: int) -> tuple[float, int]:
    """(GFLOP/s, n) of float32 n x n products, n doubled until one takes GEMM_TARGET_SECONDS."""
    n = 256
    while True:
        rng = np.random.default_rng(0)
        a = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        b = xp.asarray(rng.standard_normal((n, n), dtype=np.float32))
        c = xp.empty((n, n), dtype=np.float32)

        def run(a: Any = a, b: Any = b, c: Any = c) -> None:
            xp.matmul(a, b, out=c)
            synchronize()

        run()  # warm-up: BLAS threads, GPU handles
        seconds = _best(run, repeats=2, budget=GEMM_TARGET_SECONDS)
        if seconds >= GEMM_TARGET_SECONDS or n >= max_n:
            seconds = min(seconds, _best(run, repeats=6, budget=0.5))
            return 2 * n**3 / seconds / 1e9, n
        n *= 2


def _cpu_copy(threads: int) -> float:
    """GB/s (read + write) of a COPY_BYTES copy split over `threads` threads."""
    src = np.ones(COPY_BYTES // 4, dtype=np.float32)
    dst = np.zeros_like(src)  # both touched: no page faults in the timed runs
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    parts = [(dst[lo:hi], src[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    if threads == 1:
        def run() -> None:
            np.copyto(dst, src)
        seconds = _best(run, repeats=8, budget=0.5)
    else:
        with ThreadPoolExecutor(threads) as pool:
            def run() -> None:
                list(pool.map(lambda part: np.copyto(*part), parts))
            run()
            seconds = _best(run, repeats=8, budget=0.5)
    return 2 * src.nbytes / seconds / 1e9


def _device_copy(xp: Any, synchronize: Any) -> float:
    src = xp.ones(COPY_BYTES // 4, dtype=np.float32)
    dst = xp.zeros_like(src)

    def run() -> None:
        dst[...] = src
        synchronize()

    run()
    return 2 * src.nbytes / _best(run, repeats=8, budget=0.5) / 1e9


# --- the cache ---------------------------------------------------------------------------------
def _key(backend: Any, threads: int) -> str:
    """What the numbers depend on: the machine, its processor (or GPU), the device, the thread
    count, and NumPy (its BLAS)."""
    return (f"{platform.node()}|{_processor(backend)}|{backend.device}|threads={threads}"
            f"|numpy {np.__version__}")


def _processor(backend: Any) -> str:
    if backend.name == "cuda":
        try:
            import cupy

            name = cupy.cuda.runtime.getDeviceProperties(backend.index)["name"]
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # noqa: BLE001 - a name is only a label
            return "cuda"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ceilings-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
