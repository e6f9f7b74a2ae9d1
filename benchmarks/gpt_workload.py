"""The reference mini-GPT training step, ours and PyTorch's, for throughput comparisons.

Both models: vocab 65, context 64, d_model 128, 4 heads, 4 pre-LayerNorm layers, GELU (tanh) MLP
512, learned positions, untied head, no dropout; AdamW (betas 0.9/0.99, decay 0.1), gradient
clipping at 1.0; batches of tiny-shakespeare windows, drawn ahead of time (a pool of 32, cycled).

    ours_step_factory(batch, context) -> step          # step() runs one step, returns the loss
    torch_step_factory(batch, context, threads) -> step

Standalone, each framework in its own process with the same thread count (median step time
after warm-up; tokens/s = batch * context / median):

    python benchmarks/gpt_workload.py --threads 2 [--steps 40 --warmup 10]
        [--frameworks ours ours-passive torch]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VOCAB, D_MODEL, HEADS, LAYERS, D_FF = 65, 128, 4, 4, 512
POOL = 32
BASE = (D_MODEL, HEADS, LAYERS, D_FF)  # (d_model, heads, layers, d_ff): the reference size
WIDE = (256, 8, 4, 1024)  # bench_train's gpt-wide (batch 8 x context 128): wider GEMMs, longer T


def _batches(batch: int, context: int, seed: int = 0) -> list[tuple[Any, Any]]:
    # tinygrad_lab before numpy: it pins the BLAS threads from TINYGRAD_LAB_THREADS
    from tinygrad_lab import datasets  # noqa: I001
    import numpy as np

    train_ids, _, vocab = datasets.load_shakespeare_chars()
    assert vocab.size == VOCAB
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(POOL):
        starts = rng.integers(0, len(train_ids) - context - 1, size=batch)
        offsets = starts[:, None] + np.arange(context)[None, :]  # (B, T)
        out.append((train_ids[offsets], train_ids[offsets + 1]))
    return out


def ours_step_factory(batch: int = 16, context: int = 64,
                      size: tuple[int, int, int, int] = BASE) -> Callable[[], float]:
    """One training step (tinygrad_lab.train.train_step) of the shakespeare-gpt recipe's model
    (tinygrad_lab.models.GPT), kernels as configured; size = (d_model, heads, layers, d_ff)."""
    import tinygrad_lab as tl
    from tinygrad_lab.models import GPT, GPTConfig, configure_optimizers
    from tinygrad_lab.nn import functional as F
    from tinygrad_lab.train import train_step

    tl.manual_seed(0)
    d_model, heads, layers, d_ff = size
    model = GPT(GPTConfig(VOCAB, context, d_model, heads, layers, d_ff))
    opts = configure_optimizers(model, 1e-3, 0.1)
    pool = _batches(batch, context)
    count = [0]

    def loss_fn(model: Any, batch: Any) -> Any:
        x, y = batch  # (B, T) ids and next ids
        return F.cross_entropy(model(x), y)  # logits (B, T, V)

    def step() -> float:
        x, y = pool[count[0] % POOL]
        count[0] += 1
        return train_step(model, (x, y), loss_fn, opts, clip=1.0).loss.item()

    return step


def torch_step_factory(batch: int = 16, context: int = 64, threads: int = 2,
                       size: tuple[int, int, int, int] = BASE) -> Callable[[], float]:
    """The same model in PyTorch eager, written as nanoGPT writes it (fused qkv Linear,
    F.scaled_dot_product_attention with is_causal=True): the sweep's own
    tinygrad_lab.scaling.torch_models.GPT at this size."""
    import torch
    from torch.nn import functional as F

    from tinygrad_lab.scaling.torch_models import GPT

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    d_model, heads, layers, d_ff = size
    model = GPT({"vocab_size": VOCAB, "block_size": context, "d_model": d_model,
                 "num_heads": heads, "num_layers": layers, "d_ff": d_ff})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    pool = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in _batches(batch, context)]
    count = [0]

    def step() -> float:
        x, y = pool[count[0] % POOL]
        count[0] += 1
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, VOCAB), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def time_steps(step: Callable[[], float], warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--frameworks", nargs="+", default=["ours", "torch"],
                        choices=["ours", "ours-passive", "torch"],
                        help="ours-passive: ours with OMP_WAIT_POLICY=PASSIVE (Numba's OpenMP "
                             "workers sleep instead of spinning against BLAS's threads)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import pin_threads, result_line, run_child

    if args.child:
        pin_threads(args.threads)
        if args.framework == "ours":
            step = ours_step_factory(args.batch, args.context)
        else:
            step = torch_step_factory(args.batch, args.context, args.threads)
        times = time_steps(step, args.warmup, args.steps)
        median = statistics.median(times)
        result_line(framework=args.framework, median_step_s=median,
                    tokens_per_s=args.batch * args.context / median, min_step_s=min(times))
        return
    results = {}
    for framework in args.frameworks:
        child = "ours" if framework == "ours-passive" else framework
        env = {"OMP_WAIT_POLICY": "PASSIVE"} if framework == "ours-passive" else None
        common = ["--framework", child, "--threads", str(args.threads), "--batch",
                  str(args.batch), "--context", str(args.context), "--steps", str(args.steps),
                  "--warmup", str(args.warmup)]
        results[framework] = run_child("gpt_workload.py", common, args.threads, env=env)
        r = results[framework]
        print(f"{framework:<12} median step {r['median_step_s'] * 1e3:7.1f} ms, "
              f"{r['tokens_per_s']:9,.0f} tokens/s ({args.threads} threads)", flush=True)
    if "ours" in results and "torch" in results:
        ratio = results["ours"]["tokens_per_s"] / results["torch"]["tokens_per_s"]
        print(f"ours / torch: {ratio:.2f}")


if __name__ == "__main__":
    main()
