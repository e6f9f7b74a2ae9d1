"""The reference CNN training step, ours and PyTorch's, for throughput comparisons.

Both models (MNIST, 1x28x28): conv 1->32 3x3, ReLU, maxpool 2; conv 32->64 3x3, ReLU,
maxpool 2; flatten; dense 1600->128 ReLU; dense 128->10; softmax cross-entropy; Adam (lr 1e-3);
PyTorch's default initialisation. Ours fuses each ReLU into the layer before it (Conv2d and
Linear take `activation=`), as the mnist-cnn recipe does.

    ours_step_factory(batch) -> (step, batches)          # step(x, y) runs one training step
    torch_step_factory(batch, threads) -> (step, batches)

`batches` is an endless iterator of shuffled MNIST batches (x (B, 1, 28, 28) float32 in [0, 1],
y (B,) int64), as benchmarks/bench_train.py's `_time_steps` takes them. Standalone, each
framework in its own process with the same thread count (median step time after warm-up;
samples/s = batch / median):

    python benchmarks/cnn_workload.py --threads 2 [--steps 60 --warmup 10]
        [--frameworks ours torch]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Step = Callable[[Any, Any], Any]
Batches = Iterator[tuple[Any, Any]]


def mnist_batches(batch: int, seed: int = 0) -> Batches:
    """Endless shuffled MNIST batches: x (B, 1, 28, 28) float32 in [0, 1], y (B,) int64."""
    # tinygrad_lab before numpy: it sets up the BLAS threads from TINYGRAD_LAB_THREADS
    from tinygrad_lab import datasets  # noqa: I001
    import numpy as np

    (x, y), _ = datasets.load_mnist()
    x = (x.astype(np.float32) / 255).reshape(len(x), 1, 28, 28)
    y = y.astype(np.int64)
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            idx = order[i:i + batch]
            yield x[idx], y[idx]


def ours_step_factory(batch: int = 64) -> tuple[Step, Batches]:
    """One training step (tinygrad_lab.train.train_step) of the mnist-cnn recipe's model
    (tinygrad_lab.models.CNN), without its dropout."""
    import tinygrad_lab as tl
    from tinygrad_lab import optim
    from tinygrad_lab.models import CNN, CNNConfig
    from tinygrad_lab.nn import functional as F
    from tinygrad_lab.train import train_step

    tl.manual_seed(0)
    model = CNN(CNNConfig(dropout=0.0))
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn(model: Any, batch: Any) -> Any:
        x, y = batch
        return F.cross_entropy(model(tl.Tensor(x)), y)

    def step(x: Any, y: Any) -> Any:
        return train_step(model, (x, y), loss_fn, opt).loss

    return step, mnist_batches(batch)


def torch_step_factory(batch: int = 64, threads: int = 2) -> tuple[Step, Batches]:
    """The same network in PyTorch eager (tinygrad_lab.scaling.torch_models, as the sweep)."""
    import torch
    from torch import nn

    from tinygrad_lab.scaling.torch_models import cnn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = cnn({"in_channels": 1, "image": 28, "channels": (32, 64), "hidden": 128,
                 "classes": 10})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: Any, y: Any) -> Any:
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step, mnist_batches(batch)


def time_steps(step: Step, batches: Batches, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step(*next(batches))
    times = []
    for _ in range(steps):
        x, y = next(batches)
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--frameworks", nargs="+", default=["ours", "torch"],
                        choices=["ours", "torch"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import pin_threads, result_line, run_child

    if args.child:
        pin_threads(args.threads)
        if args.framework == "ours":
            step, batches = ours_step_factory(args.batch)
        else:
            step, batches = torch_step_factory(args.batch, args.threads)
        times = time_steps(step, batches, args.warmup, args.steps)
        median = statistics.median(times)
        result_line(framework=args.framework, median_step_s=median,
                    samples_per_s=args.batch / median, min_step_s=min(times))
        return
    results = {}
    for framework in args.frameworks:
        common = ["--framework", framework, "--threads", str(args.threads), "--batch",
                  str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
        results[framework] = run_child("cnn_workload.py", common, args.threads)
        r = results[framework]
        print(f"{framework:<6} median step {r['median_step_s'] * 1e3:7.2f} ms "
              f"(min {r['min_step_s'] * 1e3:.2f}), {r['samples_per_s']:8,.0f} samples/s "
              f"({args.threads} threads)", flush=True)
    if "ours" in results and "torch" in results:
        ratio = results["ours"]["samples_per_s"] / results["torch"]["samples_per_s"]
        print(f"ours / torch: {ratio:.2f}")


if __name__ == "__main__":
    main()
