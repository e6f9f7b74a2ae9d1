"""Optimizer-step throughput in parameters per second: ours vs PyTorch, 20M parameters.

    python benchmarks/bench_optim.py --threads 2 [--rounds 3] [--optimizer adam|adamw]

The parameters are a GPT-like mix (a few large matrices, many small biases and gains), about 20M
in all, float32, gradients random. Variants, each in its own process with the same thread count,
run alternately `--rounds` times; the table gives the median Gparam/s of each and the median of
the per-round ratios ours (multi-tensor) / PyTorch fused:

- ours: `opt.step()` with kernels (one multi-tensor Numba pass per parameter group)
- ours, per tensor: the same kernels called one tensor at a time (what `step` does without a
  multi-tensor kernel, or under profiling)
- PyTorch fused: torch.optim.Adam(fused=True); PyTorch foreach: Adam(foreach=True)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report, pin_threads, result_line, run_child, torch_available  # noqa: E402

LAYERS, WIDTH = 20, 256  # 20 blocks of (4 W x W, 4 W x W, W x 4W, 4W x W) + biases + gains
VARIANTS = ("ours", "ours-per-tensor", "torch-fused", "torch-foreach")


def shapes() -> list[tuple[int, ...]]:
    """About 20M parameters in 20 * 10 + 2 tensors, from 256 to 2M elements."""
    w = WIDTH
    out: list[tuple[int, ...]] = [(8192, w)]  # an embedding table
    for _ in range(LAYERS):
        out += [(w, 3 * w), (3 * w,), (w, w), (w,), (w, 4 * w), (4 * w,), (4 * w, w), (w,),
                (w,), (w,)]  # qkv, proj, fc, fc_out, two LayerNorm gains
    out.append((w, 8000))  # a vocabulary head
    return out


def child(args: argparse.Namespace) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s, dtype=np.float32) for s in shapes()]
    grads = [rng.standard_normal(s, dtype=np.float32) * 1e-3 for s in shapes()]
    count = sum(a.size for a in arrays)
    cls = "AdamW" if args.optimizer == "adamw" else "Adam"
    if args.variant.startswith("torch"):
        import torch

        torch.set_num_threads(args.threads)
        params = [torch.nn.Parameter(torch.from_numpy(a)) for a in arrays]
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g)
        flag = {"fused": True} if args.variant == "torch-fused" else {"foreach": True}
        opt = getattr(torch.optim, cls)(params, lr=1e-3, **flag)
        step = opt.step
    else:
        import tinygrad_lab as tl
        from tinygrad_lab import optim
        from tinygrad_lab.backends import get_backend

        params = [tl.nn.Parameter(a) for a in arrays]
        for p, g in zip(params, grads):
            p.grad = tl.Tensor(g)
        opt = getattr(optim, cls)(params, lr=1e-3)
        step = opt.step
        if args.variant == "ours-per-tensor":
            backend = get_backend("cpu")
            name = f"{cls.lower()}_step"
            opt.step()  # makes the state
            states = [opt.state[id(p)] for p in params]

            def step() -> None:
                for p, s in zip(params, states):
                    s["step"] += 1
                    backend.call(name, p.data, p.grad.data, s["m"], s["v"], 1e-3, 0.9, 0.999,
                                 1e-8, 0.01 if cls == "AdamW" else 0.0, s["step"])

    for _ in range(3):
        step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result_line(variant=args.variant, params=count, median_s=median, gparams_per_s=count / median
                / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--optimizer", choices=["adam", "adamw"], default="adam")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pin_threads(args.threads)
        child(args)
        return
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    variants = [v for v in VARIANTS if torch_available() or not v.startswith("torch")]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            common = ["--variant", v, "--threads", str(args.threads), "--repeats",
                      str(args.repeats), "--optimizer", args.optimizer]
            results[v].append(run_child("bench_optim.py", common, args.threads)["gparams_per_s"])
    report = Report("bench_optim", args.threads,
                    meta={"rounds": args.rounds, "optimizer": args.optimizer})
    row = {f"{v} Gparam/s": statistics.median(r) for v, r in results.items()}
    if "torch-fused" in results:
        ratios = [o / t for o, t in zip(results["ours"], results["torch-fused"])]
        row["ours / PyTorch fused"] = statistics.median(ratios)
        row["lowest round"], row["highest round"] = min(ratios), max(ratios)
    report.rows.append(row)
    print(row, flush=True)
    json_path, md_path = report.write(list(row))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
