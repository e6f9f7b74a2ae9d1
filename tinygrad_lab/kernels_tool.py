"""Compile every registered CPU kernel ahead of time and report how long each took.

Numba compiles a kernel on its first call (and caches the machine code on disk), so the first
training step would otherwise pay for every kernel it touches. `warm()` calls each kernel twice
on small float32 and float64 inputs; the first call minus the second is its compile (or cache
load) time. Backs `tinygrad-lab kernels --warm`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tinygrad_lab import helpers

DTYPES = (np.float32, np.float64)


def _example_args(name: str, dtype: Any) -> tuple[Any, ...] | None:
    """Fresh small arguments for one call of kernel `name` (fresh: some kernels work in place).

    Kernels not listed here may bring their own: a kernel module's `EXAMPLES` dict maps a kernel
    name to a function of the dtype returning the arguments.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(dtype)  # (rows, features)
    g = rng.standard_normal((4, 8)).astype(dtype)
    p, gp = x.reshape(-1).copy(), g.reshape(-1).copy()  # a parameter and its gradient

    def state() -> Any:
        return np.zeros_like(p)

    family = name.rsplit("_", 1)[0]
    if name.endswith("_forward") and family in ("relu", "tanh", "sigmoid", "gelu"):
        return (x,)
    if name.endswith("_backward") and family in ("relu", "tanh", "sigmoid", "gelu"):
        return (g, x)
    examples: dict[str, Callable[[], tuple[Any, ...]]] = {
        "bias_act_forward": lambda: (x.copy(), x[0].copy(), "relu"),
        "softmax_forward": lambda: (x, -1),
        "softmax_backward": lambda: (g, x, -1),
        "log_softmax_forward": lambda: (x, -1),
        "log_softmax_backward": lambda: (g, x, -1),
        "softmax_cross_entropy_forward": lambda: (x, np.arange(4) % 8),
        "sum_to_shape": lambda: (x, (8,)),
        "sgd_step": lambda: (p, gp, state(), 0.1, 0.9, 0.0, 0.0, False, False),
        "adam_step": lambda: (p, gp, state(), state(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1),
        "adamw_step": lambda: (p, gp, state(), state(), 1e-3, 0.9, 0.999, 1e-8, 0.01, 1),
        "rmsprop_step": lambda: (p, gp, state(), 1e-2, 0.99, 1e-8, 0.0, 0.9, state()),
        "adagrad_step": lambda: (p, gp, state(), 1e-2, 1e-10, 0.0),
        "embedding_forward": lambda: (x, np.array([0, 2, 2, 3])),  # weight (4, 8), ids
        "embedding_backward": lambda: (g, np.array([0, 2, 2, 3]), 4),  # g (4, 8), ids, V
    }
    make = examples.get(name)
    if make is not None:
        return make()
    return _module_example(name, dtype)


def _module_example(name: str, dtype: Any) -> tuple[Any, ...] | None:
    import importlib

    from tinygrad_lab import kernels

    target = kernels.registered("cpu").get(name)
    if target is None:
        return None
    module = importlib.import_module(f"tinygrad_lab.kernels.{target.split(':')[0]}")
    make = getattr(module, "EXAMPLES", {}).get(name)
    return tuple(make(np.dtype(dtype))) if make is not None else None


def warm(verbose: bool = True, names: Iterable[str] | None = None) -> list[tuple[str, float]]:
    """Compile (or load from Numba's cache) every registered CPU kernel for float32 and float64.

    Returns (name, seconds) per kernel, seconds being the first calls minus the second calls,
    summed over both dtypes. A kernel sharing compiled code with one warmed before it (adamw_step
    with adam_step) shows about zero. Kernels that cannot load (Numba missing) or have no example
    inputs (see `_example_args`) are left out, with a line saying so when verbose. `names`
    limits the work to those kernels (default: all registered).
    """
    from tinygrad_lab import kernels
    from tinygrad_lab.kernels import _common

    # The examples are small, and small inputs of some kernels go to the reference: not here.
    saved, _common.SMALL_TO_REFERENCE = _common.SMALL_TO_REFERENCE, 0
    try:
        return _warm(kernels, verbose, names)
    finally:
        _common.SMALL_TO_REFERENCE = saved


def _warm(kernels: Any, verbose: bool, names: Iterable[str] | None) -> list[tuple[str, float]]:
    results: list[tuple[str, float]] = []
    wanted = set(names) if names is not None else None
    for name in kernels.registered("cpu"):
        if wanted is not None and name not in wanted:
            continue
        fn = kernels.lookup(name, "cpu")
        if fn is None:
            if verbose:
                helpers.log(f"{name:<32} unavailable (is numba installed?)")
            continue
        if _example_args(name, DTYPES[0]) is None:
            if verbose:
                helpers.log(f"{name:<32} skipped: no example inputs (kernels_tool._example_args)")
            continue
        seconds = 0.0
        for dtype in DTYPES:
            first = _timed_call(fn, name, dtype)
            second = _timed_call(fn, name, dtype)
            seconds += max(first - second, 0.0)
        results.append((name, seconds))
        if verbose:
            helpers.log(f"{name:<32} {seconds:8.3f} s")
    if verbose:
        total = math.fsum(s for _, s in results)
        helpers.log(f"{len(results)} kernels warmed in {total:.2f} s")
    return results


def _timed_call(fn: Callable[..., Any], name: str, dtype: Any) -> float:
    args = _example_args(name, dtype)
    assert args is not None
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
