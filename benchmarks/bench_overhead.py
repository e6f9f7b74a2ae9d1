"""Per-op overhead on tiny tensors: a chain of 100 small ops, forward and backward, µs per op.

    python benchmarks/bench_overhead.py --threads 2

Tiny tensors (4x4) make the array maths negligible, so the figure is the engine's own cost per
op: building the node, dispatch, and walking the tape back. Ours vs PyTorch eager, each in its
own process with the same thread count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report, pin_threads, result_line, run_child, torch_available  # noqa: E402

CHAIN = 100  # ops per chain: 25 repeats of (mul, add, tanh, sub)


def chain(x, c):
    for _ in range(CHAIN // 4):
        x = (x * c + c).tanh() - c
    return x


def measure(make_leaf, make_const, sum_fn, repeats: int) -> tuple[float, float]:
    x = make_leaf()
    c = make_const()
    fwd, both = [], []
    for i in range(repeats + 20):
        start = time.perf_counter()
        y = chain(x, c)
        mid = time.perf_counter()
        sum_fn(y).backward()
        end = time.perf_counter()
        if i >= 20:
            fwd.append(mid - start)
            both.append(end - start)
        x.grad = None
    return statistics.median(fwd) / CHAIN * 1e6, statistics.median(both) / CHAIN * 1e6


def child(framework: str, repeats: int, threads: int) -> None:
    import numpy as np

    if framework == "ours":
        import tinygrad_lab as tl

        fwd, both = measure(lambda: tl.Tensor(np.ones((4, 4), np.float32), requires_grad=True),
                            lambda: tl.Tensor(np.full((4, 4), 0.5, np.float32)),
                            lambda y: y.sum(), repeats)
    else:
        import torch

        torch.set_num_threads(threads)
        fwd, both = measure(lambda: torch.ones((4, 4), requires_grad=True),
                            lambda: torch.full((4, 4), 0.5), lambda y: y.sum(), repeats)
    result_line(framework=framework, forward_us=fwd, forward_backward_us=both)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pin_threads(args.threads)
        child(args.framework, args.repeats, args.threads)
        return
    report = Report("bench_overhead", args.threads)
    common = ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    frameworks = ["ours"] + (["torch"] if torch_available() else [])
    results = {f: run_child("bench_overhead.py", ["--framework", f, *common], args.threads)
               for f in frameworks}
    for phase, key in (("forward", "forward_us"), ("forward + backward", "forward_backward_us")):
        row = {"phase": phase, "ours µs/op": results["ours"][key]}
        if "torch" in results:
            row["PyTorch µs/op"] = results["torch"][key]
            row["ours / PyTorch"] = results["ours"][key] / results["torch"][key]
        report.rows.append(row)
    report.notes.append(f"chain of {CHAIN} ops (mul, add, tanh, sub) on 4x4 float32 tensors; "
                        "µs per op, lower is better")
    json_path, md_path = report.write(["phase", "ours µs/op", "PyTorch µs/op", "ours / PyTorch"])
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
