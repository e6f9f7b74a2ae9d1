"""Per-kernel speed: Numba kernel vs its NumPy reference vs PyTorch, with achieved GB/s.

    python benchmarks/bench_kernels.py --threads 2

Bytes are the mandatory traffic (every input read once, every output written once), so GB/s
is comparable with the machine's copy bandwidth. That is measured in the same loop: each timed
call alternates with a timed copy moving the same bytes (half read, half written; np.copyto on
--threads threads), and "% of copy" is median(copy time) / median(call time), with the
25th-75th percentile range of the per-pair ratios as its spread. A ratio of interleaved medians,
never a difference of separately timed ones: a VM whose speed drifts moves both sides alike.
In-place kernels (bias_act_forward, the optimizer steps) run again on their own output (their
timing does not depend on the values), bias_act_forward on four buffers in turn so that its
16 MiB do not stay in a 32 MiB L3 cache. They can pass 100 %: writing in place spares the read a
copy makes of each line it overwrites.
Ours and the NumPy reference run in one process; PyTorch in its own, with the same thread count.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Report,
    median_seconds,
    pin_threads,
    result_line,
    run_child,
    torch_available,
)

N, D = 4096, 1024  # activations: e.g. 16 x 256 tokens x 1024 features
ATTENTION = (32, 8, 128, 128)  # attention scores (B, H, T, S): as many elements as N x D
PARAMS = 4_000_000  # optimizer updates: a 4M-parameter model


def cases(np: Any) -> list[dict[str, Any]]:
    """name, args, bytes moved; arrays float32, built once."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D), dtype=np.float32)
    g = rng.standard_normal((N, D), dtype=np.float32)
    y_relu = np.maximum(x, 0)
    y_tanh = np.tanh(x)
    b = rng.standard_normal(D, dtype=np.float32)
    logits = rng.standard_normal((N, 1024), dtype=np.float32)
    labels = rng.integers(0, 1024, N)
    sm = np.exp(logits - logits.max(-1, keepdims=True))
    sm /= sm.sum(-1, keepdims=True)
    scores = rng.standard_normal(ATTENTION, dtype=np.float32)  # (B, H, T, S), causal
    weights = np.tril(np.exp(scores))
    weights /= weights.sum(-1, keepdims=True)
    scores_t = np.ascontiguousarray(scores.swapaxes(-1, -2))  # keys first (B, H, S, T)
    weights_t = np.ascontiguousarray(weights.swapaxes(-1, -2))
    a = scores.nbytes
    p = rng.standard_normal(PARAMS, dtype=np.float32)
    pg = rng.standard_normal(PARAMS, dtype=np.float32)
    s = x.nbytes
    opt_state = lambda: np.zeros(PARAMS, np.float32)  # noqa: E731
    m1, v1, m2, v2, vel = opt_state(), opt_state(), opt_state(), opt_state(), opt_state()
    return [
        {"name": "relu_forward", "args": (x,), "bytes": 2 * s},
        {"name": "relu_backward", "args": (g, y_relu), "bytes": 3 * s},
        {"name": "tanh_forward", "args": (x,), "bytes": 2 * s},
        {"name": "tanh_backward", "args": (g, y_tanh), "bytes": 3 * s},
        {"name": "sigmoid_forward", "args": (x,), "bytes": 2 * s},
        {"name": "gelu_forward", "args": (x,), "bytes": 2 * s},
        {"name": "gelu_backward", "args": (g, x), "bytes": 3 * s},
        {"name": "softplus_forward", "args": (x,), "bytes": 2 * s},
        {"name": "bias_act_forward", "args": (x.copy(), b, "relu"), "bytes": 2 * s,
         "label": "bias_act_forward (relu)", "rotate": 4},
        {"name": "softmax_forward", "args": (logits, -1), "bytes": 2 * logits.nbytes},
        {"name": "softmax_backward", "args": (g, sm, -1), "bytes": 3 * s},
        {"name": "log_softmax_forward", "args": (logits, -1), "bytes": 2 * logits.nbytes},
        {"name": "softmax_cross_entropy_forward", "args": (logits, labels),
         "bytes": 2 * logits.nbytes},
        {"name": "sum_to_shape", "args": (g, (D,)), "bytes": s},
        {"name": "masked_softmax_forward", "args": (scores, 0.125, True, None), "bytes": 2 * a,
         "label": "masked_softmax_forward (causal)"},
        {"name": "masked_softmax_backward", "args": (scores, weights, 0.125), "bytes": 3 * a},
        {"name": "masked_softmax_columns_forward", "args": (scores_t, 0.125, True, None),
         "bytes": 2 * a, "label": "masked_softmax_columns_forward (causal)"},
        {"name": "masked_softmax_columns_backward", "args": (scores_t, weights_t, 0.125, True),
         "bytes": 3 * a, "label": "masked_softmax_columns_backward (causal)"},
        {"name": "adam_step", "args": (p, pg, m1, v1, 1e-3, 0.9, 0.999, 1e-8, 0.0, 10),
         "bytes": 7 * p.nbytes},
        {"name": "adamw_step", "args": (p, pg, m2, v2, 1e-3, 0.9, 0.999, 1e-8, 0.01, 10),
         "bytes": 7 * p.nbytes},
        {"name": "sgd_step", "args": (p, pg, vel, 1e-3, 0.9, 0.0, 0.0, False, False),
         "bytes": 5 * p.nbytes, "label": "sgd_step (momentum)"},
    ]


def torch_cases(torch: Any) -> dict[str, Callable[[], Any]]:
    """PyTorch doing the same work, by kernel name."""
    F = torch.nn.functional
    x = torch.randn(N, D)
    g = torch.randn(N, D)
    y = torch.tanh(x)
    b = torch.randn(D)
    logits = torch.randn(N, 1024)
    labels = torch.randint(0, 1024, (N,))
    sm = torch.softmax(logits, -1)
    scores = torch.randn(ATTENTION)
    hidden = torch.ones(ATTENTION[-2:], dtype=torch.bool).triu(1)
    weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), -1)
    p = torch.nn.Parameter(torch.randn(PARAMS))
    p.grad = torch.randn(PARAMS)
    adam = torch.optim.Adam([p], lr=1e-3)
    adamw = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01)
    sgd = torch.optim.SGD([p], lr=1e-3, momentum=0.9)
    xr = x.clone().requires_grad_(True)
    lr_ = logits.clone().requires_grad_(True)

    def ce() -> Any:
        loss = F.cross_entropy(lr_, labels)
        return torch.autograd.grad(loss, lr_)

    return {
        "relu_forward": lambda: torch.relu(x),
        "relu_backward": lambda: torch.ops.aten.threshold_backward(g, y, 0.0),
        "tanh_forward": lambda: torch.tanh(x),
        "tanh_backward": lambda: torch.ops.aten.tanh_backward(g, y),
        "sigmoid_forward": lambda: torch.sigmoid(x),
        "gelu_forward": lambda: F.gelu(x, approximate="tanh"),
        "gelu_backward": lambda: torch.ops.aten.gelu_backward(g, x, approximate="tanh"),
        "softplus_forward": lambda: F.softplus(x),
        "bias_act_forward": lambda: torch.relu_(x.clone().add_(b)),
        "softmax_forward": lambda: torch.softmax(logits, -1),
        "softmax_backward": lambda: torch.ops.aten._softmax_backward_data(g, y, -1, g.dtype),
        "log_softmax_forward": lambda: torch.log_softmax(logits, -1),
        "softmax_cross_entropy_forward": ce,
        "sum_to_shape": lambda: g.sum(0),
        "masked_softmax_forward": lambda: torch.softmax(
            (scores * 0.125).masked_fill(hidden, float("-inf")), -1),
        "masked_softmax_backward": lambda: torch.ops.aten._softmax_backward_data(
            scores, weights, -1, scores.dtype) * 0.125,
        "adam_step": adam.step,
        "adamw_step": adamw.step,
        "sgd_step": sgd.step,
        "_unused": lambda: (xr, sm),
    }


def parallel_copy(np: Any, nbytes: int, pool: ThreadPoolExecutor) -> Callable[[], None]:
    """A copy reading nbytes / 2 and writing nbytes / 2, split over the pool's threads (np.copyto
    releases the GIL), so the baseline uses as many threads as the kernels."""
    src = np.ones(max(nbytes // 8, 1), np.float32)
    dst = np.empty_like(src)
    bounds = np.linspace(0, src.size, pool._max_workers + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def copy() -> None:
        for _ in pool.map(lambda part: np.copyto(*part), parts):
            pass

    return copy


def interleaved(fn: Callable[[], Any], copy: Callable[[], None], warmup: int,
                repeats: int) -> dict[str, float]:
    """Time fn() and copy() in alternation: the median seconds of each, and the copy/call ratio
    as a median with its 25th-75th percentile range."""
    for _ in range(warmup):
        fn()
        copy()
    calls, copies = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        calls.append(time.perf_counter() - start)
        start = time.perf_counter()
        copy()
        copies.append(time.perf_counter() - start)
    ratios = sorted(c / t for c, t in zip(copies, calls))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {"s": statistics.median(calls), "copy_s": statistics.median(copies),
            "of_copy": statistics.median(copies) / statistics.median(calls),
            "of_copy_p25": q1, "of_copy_p75": q3}


def _rotating(fn: Callable[..., Any], firsts: Iterator[Any], rest: tuple[Any, ...]) -> Any:
    return fn(next(firsts), *rest)


def child_ours(args: argparse.Namespace) -> None:
    import numpy as np

    from tinygrad_lab.backends import REFERENCES, get_backend
    from tinygrad_lab.helpers import reference, use_kernels

    backend = get_backend("cpu")
    pool = ThreadPoolExecutor(args.threads)
    out: dict[str, Any] = {"cases": []}
    for case in cases(np):
        name = case["name"]
        with use_kernels():
            has_kernel = backend.is_kernel(name)
            kernel = backend.resolve(name)
        with reference():
            ref = REFERENCES[name]
        fns = {"reference": ref, **({"kernel": kernel} if has_kernel else {})}
        row = {"name": case.get("label", name), "key": name, "bytes": case["bytes"]}
        copy = parallel_copy(np, case["bytes"], pool)
        first, rest = case["args"][0], case["args"][1:]
        copies = [first] + [first.copy() for _ in range(case.get("rotate", 1) - 1)]
        for label, fn in fns.items():
            call = partial(_rotating, fn, itertools.cycle(copies), rest)
            row[label] = interleaved(call, copy, 3, args.repeats)
        out["cases"].append(row)
    result_line(**out)


def child_torch(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    fns = torch_cases(torch)
    result_line(times={name: median_seconds(fn, 3, args.repeats) for name, fn in fns.items()
                       if not name.startswith("_")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pin_threads(args.threads)
        (child_ours if args.framework == "ours" else child_torch)(args)
        return
    common = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    ours = run_child("bench_kernels.py", ["--framework", "ours", *common], args.threads)
    torch = (run_child("bench_kernels.py", ["--framework", "torch", *common], args.threads)
             if torch_available() else {"times": {}})
    report = Report("bench_kernels", args.threads)
    copy_gbs = []
    for row in ours["cases"]:
        kernel, ref = row.get("kernel"), row["reference"]
        best = kernel or ref
        kernel_s = kernel["s"] if kernel else None
        t_torch = torch["times"].get(row["key"])
        copy_gbs.append(row["bytes"] / best["copy_s"] / 1e9)
        report.rows.append({
            "kernel": row["name"],
            "kernel ms": kernel_s * 1e3 if kernel_s else "none",
            "NumPy ref ms": ref["s"] * 1e3,
            "PyTorch ms": t_torch * 1e3 if t_torch else "",
            "kernel / ref speed-up": ref["s"] / kernel_s if kernel_s else "",
            "kernel / PyTorch speed-up": t_torch / kernel_s if (kernel_s and t_torch) else "",
            "GB/s": row["bytes"] / best["s"] / 1e9,
            "% of copy": 100 * best["of_copy"],
            "% of copy, p25-p75": f"{100 * best['of_copy_p25']:.0f}-"
                                  f"{100 * best['of_copy_p75']:.0f}",
        })
    report.meta["copy_bandwidth_gbs"] = statistics.median(copy_gbs)
    report.notes.append(
        f"copy bandwidth (np.copyto of each case's bytes on {args.threads} threads, interleaved "
        f"with its calls): median "
        f"{statistics.median(copy_gbs):.1f} GB/s, {min(copy_gbs):.1f}-{max(copy_gbs):.1f} over "
        "the cases; % of copy is the kernel's (or, without one, the reference's)")
    report.notes.append(f"activations {N}x{D} float32; logits {N}x1024; optimizer {PARAMS:,} "
                        "float32 parameters")
    cols = ["kernel", "kernel ms", "NumPy ref ms", "PyTorch ms", "kernel / ref speed-up",
            "kernel / PyTorch speed-up", "GB/s", "% of copy", "% of copy, p25-p75"]
    json_path, md_path = report.write(cols)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
