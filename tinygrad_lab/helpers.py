"""Process-wide switches (DEBUG, KERNELS, threads) and a memory probe for leak checks.

Read once from the environment at import, changed at run time through the functions here, so
that the benchmarks and the tests flip exactly the same switches a user does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


DEBUG: int = _env_int("DEBUG", 0)
"""0 quiet; 1 backend and device choices; 2 one line per op call; 3 also saved bytes."""

_KERNELS: bool = _env_int("TINYGRAD_LAB_KERNELS", 1) != 0
"""False forces every named array function onto its pure NumPy/CuPy reference."""

_switch_listeners: list = []
"""Callables run after the kernel switch flips (backends drop their resolved-function caches)."""


def on_switch(callback) -> None:  # noqa: ANN001
    _switch_listeners.append(callback)


def kernels_enabled() -> bool:
    return _KERNELS


def set_kernels(enabled: bool) -> None:
    """Turn the hand-written kernels on or off (off = the NumPy reference path)."""
    global _KERNELS
    _KERNELS = bool(enabled)
    for callback in _switch_listeners:
        callback()


@contextlib.contextmanager
def reference() -> Iterator[None]:
    """Run the block on the pure-NumPy reference path: `with tl.reference(): ...`."""
    previous = _KERNELS
    set_kernels(False)
    try:
        yield
    finally:
        set_kernels(previous)


@contextlib.contextmanager
def use_kernels() -> Iterator[None]:
    """Run the block with kernels on, whatever the environment said."""
    previous = _KERNELS
    set_kernels(True)
    try:
        yield
    finally:
        set_kernels(previous)


def set_num_threads(n: int) -> None:
    """One thread count for Numba's parallel kernels and for BLAS (when threadpoolctl is there).

    BLAS reads OMP_NUM_THREADS / OPENBLAS_NUM_THREADS only when it loads, so for a fixed count
    from the start set TINYGRAD_LAB_THREADS before importing; this function also changes a
    running process where it can.
    """
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    global _threads
    _threads = n
    if "numba" in sys.modules or _numba_available():
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    import threadpoolctl

    threadpoolctl.threadpool_limits(n)


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _default_threads() -> int:
    n = _env_int("TINYGRAD_LAB_THREADS", 0)
    return n if n > 0 else (os.cpu_count() or 1)


_threads: int = _default_threads()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def num_threads() -> int:
    """The thread count the engine was told to use (Numba kernels and BLAS)."""
    return _threads


def apply_thread_env() -> None:
    """Set up the two thread pools (Numba's OpenMP team, BLAS's) so they share the cores.

    Both pools spin-wait after each call by default. Two spinning pools on the same cores starve
    each other: a step that alternates BLAS matmuls and parallel kernels ran 5-6x slower on 2
    threads than on 1. So idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) and OpenBLAS
    threads spin only briefly (OPENBLAS_THREAD_TIMEOUT=4, 2^4 cycles). Variables the user set win.
    BLAS reads its variables when NumPy loads it: importing tinygrad_lab first covers that;
    `set_num_threads` fixes the count later where threadpoolctl can.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    n = _env_int("TINYGRAD_LAB_THREADS", 0)
    if n > 0:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"):
            os.environ.setdefault(var, str(n))
        if "numpy" in sys.modules:  # BLAS already loaded: its variables came too late
            import threadpoolctl

            threadpoolctl.threadpool_limits(n, user_api="blas")


def log(msg: str) -> None:
    """The one place the engine prints diagnostics (stderr, so stdout stays the user's)."""
    print(msg, file=sys.stderr)


def live_tensor_bytes() -> int:
    """Bytes held by every live Tensor's array (and its .grad), by optimizer state and by saved
    arrays of graphs not yet walked, each buffer counted once (tinygrad_lab.memory.live_arrays).

    Walks the garbage collector's objects: slow, meant for leak checks, not for hot paths.
    """
    from tinygrad_lab.memory.ledger import live_arrays, owner

    seen: set[int] = set()
    total = 0
    for _device, _category, arr in live_arrays():
        base = owner(arr)
        if id(base) not in seen:
            seen.add(id(base))
            total += int(getattr(base, "nbytes", 0))
    return total
