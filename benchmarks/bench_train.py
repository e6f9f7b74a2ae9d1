"""Training-step throughput: ours (kernels) vs ours (NumPy reference) vs PyTorch eager.

    python benchmarks/bench_train.py --threads 2 [--workloads mlp] [--steps 300]

Each (framework, workload) runs in its own process with the same thread count; the figure is the
median step time after warm-up, reported as samples/s (tokens/s for language models).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report, pin_threads, result_line, run_child, torch_available  # noqa: E402

WORKLOADS = ("mlp",)


# --- children: one framework, one workload ----------------------------------------------------
def _mnist_batches(batch: int, flat: bool):
    import numpy as np

    from tinygrad_lab import datasets

    (x, y), _ = datasets.load_mnist()
    x = x.astype(np.float32) / 255
    x = x.reshape(len(x), 784) if flat else x.reshape(len(x), 1, 28, 28)
    y = y.astype(np.int64)
    rng = np.random.default_rng(0)
    while True:
        order = rng.permutation(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            yield x[idx], y[idx]


def _time_steps(step, batches, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step(*next(batches))
    times = []
    for _ in range(steps):
        xb, yb = next(batches)
        start = time.perf_counter()
        step(xb, yb)
        times.append(time.perf_counter() - start)
    return times


def child_ours_mlp(args: argparse.Namespace) -> list[float]:
    import tinygrad_lab as tl
    from tinygrad_lab import nn, optim
    from tinygrad_lab.nn import functional as F

    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512, activation="relu"), nn.Linear(512, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def step(xb, yb):
        loss = F.cross_entropy(model(tl.Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return _time_steps(step, _mnist_batches(args.batch, True), args.warmup, args.steps)


def child_torch_mlp(args: argparse.Namespace) -> list[float]:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return _time_steps(step, _mnist_batches(args.batch, True), args.warmup, args.steps)


CHILDREN = {("ours", "mlp"): child_ours_mlp, ("torch", "mlp"): child_torch_mlp}
BATCH = {"mlp": 128}
UNIT = {"mlp": "samples/s"}


def child_main(args: argparse.Namespace) -> None:
    import statistics

    times = CHILDREN[(args.framework, args.workload)](args)
    median = statistics.median(times)
    items = args.batch * (args.tokens_per_sample or 1)
    result_line(framework=args.framework, workload=args.workload, median_step_s=median,
                throughput=items / median, kernels=os.environ.get("TINYGRAD_LAB_KERNELS", "1"))


# --- parent: run every variant, write JSON + markdown -----------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="mlp", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--tokens-per-sample", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pin_threads(args.threads)
        child_main(args)
        return
    report = Report("bench_train", args.threads)
    have_torch = torch_available()
    for workload in args.workloads:
        common = ["--workload", workload, "--threads", str(args.threads), "--steps",
                  str(args.steps), "--warmup", str(args.warmup), "--batch", str(BATCH[workload])]
        ours = run_child("bench_train.py", ["--framework", "ours", *common], args.threads)
        ref = run_child("bench_train.py", ["--framework", "ours", *common], args.threads,
                        env={"TINYGRAD_LAB_KERNELS": "0"})
        torch = (run_child("bench_train.py", ["--framework", "torch", *common], args.threads)
                 if have_torch else None)
        row = {"workload": workload, "unit": UNIT[workload],
               "ours": ours["throughput"], "ours (NumPy reference)": ref["throughput"],
               "ours step ms": ours["median_step_s"] * 1e3}
        if torch:
            row["PyTorch eager"] = torch["throughput"]
            row["ours / PyTorch"] = ours["throughput"] / torch["throughput"]
        row["ours / reference"] = ours["throughput"] / ref["throughput"]
        report.rows.append(row)
        print(row, flush=True)
    if not have_torch:
        report.notes.append("PyTorch not installed: pip install torch==2.13.0 for its column")
    cols = ["workload", "unit", "ours", "ours (NumPy reference)", "PyTorch eager",
            "ours / PyTorch", "ours / reference", "ours step ms"]
    json_path, md_path = report.write(cols)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
