"""Training-step throughput: ours (kernels) vs ours (NumPy reference) vs PyTorch eager.

    python benchmarks/bench_train.py --threads 2 [--workloads mlp cnn gpt] [--steps 300]
    python benchmarks/bench_train.py --baseline ../base --rounds 3   # this tree vs another one

With --baseline DIR (a checkout of another revision: `git worktree add ../base HEAD~1`), each
workload runs `--rounds` times alternately on this tree and on DIR, and the table gives both
medians, their ratio (this / baseline) and the lowest and highest per-round ratio.

    python benchmarks/bench_train.py --threads 1 --rounds 5 --no-reference   # ours vs PyTorch

Without --baseline, --rounds N (default 1) runs ours and PyTorch alternately N times per workload
and reports the median of the per-round ratios (with the lowest and highest): on a shared machine
only ratios taken close together in time mean anything. --no-reference skips the NumPy-reference
run (TINYGRAD_LAB_KERNELS=0).

Workloads: the founding MNIST MLP (batch 128), the reference CNN (benchmarks/cnn_workload.py,
batch 64), the reference mini-GPT (benchmarks/gpt_workload.py, batch 16 x context 64) and a
wider GPT (`gpt-wide`: d_model 256, 8 heads, MLP 1024, batch 8 x context 128).

Each (framework, workload) runs in its own process with the same thread count; the figure is the
median step time after warm-up, reported as samples/s (tokens/s for language models).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Report, pin_threads, result_line, run_child, torch_available  # noqa: E402

WORKLOADS = ("mlp", "cnn", "gpt", "gpt-wide")


# --- children: one framework, one workload ----------------------------------------------------
def _mnist_batches(batch: int, flat: bool):
    """The CNN workload's shuffled MNIST batches, flattened to (B, 784) for the MLP."""
    from cnn_workload import mnist_batches

    for x, y in mnist_batches(batch):
        yield (x.reshape(len(x), 784) if flat else x), y


def _time_steps(step, batches, warmup: int, steps: int) -> list[float]:
    from cnn_workload import time_steps

    return time_steps(step, batches, warmup, steps)


def child_ours_mlp(args: argparse.Namespace) -> list[float]:
    import tinygrad_lab as tl
    from tinygrad_lab import optim
    from tinygrad_lab.models import MLP
    from tinygrad_lab.nn import functional as F
    from tinygrad_lab.train import train_step

    tl.manual_seed(0)
    model = MLP()  # 784 -> 512 ReLU -> 10
    opt = optim.Adam(model.parameters(), lr=1e-3)

    def loss_fn(model, batch):
        xb, yb = batch
        return F.cross_entropy(model(tl.Tensor(xb)), yb)

    def step(xb, yb):
        return train_step(model, (xb, yb), loss_fn, opt).loss

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


def _cnn(framework: str, args: argparse.Namespace) -> list[float]:
    import cnn_workload

    if framework == "ours":
        step, batches = cnn_workload.ours_step_factory(args.batch)
    else:
        step, batches = cnn_workload.torch_step_factory(args.batch, args.threads)
    return _time_steps(step, batches, args.warmup, args.steps)


def _gpt(framework: str, args: argparse.Namespace) -> list[float]:
    import gpt_workload

    context = args.tokens_per_sample
    size = gpt_workload.WIDE if args.workload == "gpt-wide" else gpt_workload.BASE
    if framework == "ours":
        step = gpt_workload.ours_step_factory(args.batch, context, size)
    else:
        step = gpt_workload.torch_step_factory(args.batch, context, args.threads, size)
    return _time_steps(lambda *_: step(), iter(lambda: (None, None), 0), args.warmup, args.steps)


CHILDREN = {
    ("ours", "mlp"): child_ours_mlp,
    ("torch", "mlp"): child_torch_mlp,
    ("ours", "cnn"): lambda a: _cnn("ours", a),
    ("torch", "cnn"): lambda a: _cnn("torch", a),
    ("ours", "gpt"): lambda a: _gpt("ours", a),
    ("torch", "gpt"): lambda a: _gpt("torch", a),
    ("ours", "gpt-wide"): lambda a: _gpt("ours", a),
    ("torch", "gpt-wide"): lambda a: _gpt("torch", a),
}
BATCH = {"mlp": 128, "cnn": 64, "gpt": 16, "gpt-wide": 8}
TOKENS = {"mlp": 0, "cnn": 0, "gpt": 64, "gpt-wide": 128}
UNIT = {"mlp": "samples/s", "cnn": "samples/s", "gpt": "tokens/s", "gpt-wide": "tokens/s"}
# the heavier steps need fewer samples
STEPS_SCALE = {"mlp": 1.0, "cnn": 0.2, "gpt": 0.2, "gpt-wide": 0.1}


def child_main(args: argparse.Namespace) -> None:
    import statistics

    times = CHILDREN[(args.framework, args.workload)](args)
    median = statistics.median(times)
    items = args.batch * (args.tokens_per_sample or 1)
    result_line(framework=args.framework, workload=args.workload, median_step_s=median,
                throughput=items / median, kernels=os.environ.get("TINYGRAD_LAB_KERNELS", "1"))


# --- parent: run every variant, write JSON + markdown -----------------------------------------
def _child_args(workload: str, args: argparse.Namespace) -> list[str]:
    steps = max(int(args.steps * STEPS_SCALE[workload]), 10)
    warmup = max(int(args.warmup * STEPS_SCALE[workload]), 3)
    return ["--workload", workload, "--threads", str(args.threads), "--steps", str(steps),
            "--warmup", str(warmup), "--batch", str(BATCH[workload]),
            "--tokens-per-sample", str(TOKENS[workload])]


def compare_with_baseline(args: argparse.Namespace) -> None:
    """Ours on this tree vs ours on the --baseline checkout, alternating, `rounds` times."""
    import statistics

    if not (args.baseline / "tinygrad_lab").is_dir() or not (args.baseline / "kernels").is_dir():
        raise SystemExit(f"--baseline {args.baseline}: not a tinygrad_lab checkout")
    args.rounds = 3 if args.rounds is None else args.rounds
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    report = Report("bench_train_vs_baseline", args.threads,
                    meta={"baseline": str(args.baseline.resolve()), "rounds": args.rounds})
    for workload in args.workloads:
        common = ["--framework", "ours", *_child_args(workload, args)]
        this, base = [], []
        for _ in range(args.rounds):
            this.append(run_child("bench_train.py", common, args.threads)["throughput"])
            base.append(run_child("bench_train.py", common, args.threads,
                                  tree=args.baseline)["throughput"])
        ratios = [t / b for t, b in zip(this, base)]
        row = {"workload": workload, "unit": UNIT[workload],
               "this tree": statistics.median(this), "baseline": statistics.median(base),
               "this / baseline": statistics.median(this) / statistics.median(base),
               "lowest round": min(ratios), "highest round": max(ratios)}
        report.rows.append(row)
        print(row, flush=True)
    cols = ["workload", "unit", "this tree", "baseline", "this / baseline", "lowest round",
            "highest round"]
    json_path, md_path = report.write(cols)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


def _ours_vs_torch(workload: str, args: argparse.Namespace, rounds: int,
                   have_torch: bool) -> dict[str, object]:
    """One table row: ours and PyTorch alternately `rounds` times (medians, and the median,
    lowest and highest of the per-round ratios), the NumPy reference once unless skipped."""
    import statistics

    common = _child_args(workload, args)
    ours, torch, ratios = [], [], []
    for _ in range(rounds):
        ours.append(run_child("bench_train.py", ["--framework", "ours", *common], args.threads))
        if have_torch:
            torch.append(run_child("bench_train.py", ["--framework", "torch", *common],
                                   args.threads))
            ratios.append(ours[-1]["throughput"] / torch[-1]["throughput"])
    ours_tp = statistics.median(r["throughput"] for r in ours)
    row: dict[str, object] = {"workload": workload, "unit": UNIT[workload], "ours": ours_tp,
                              "ours step ms": statistics.median(r["median_step_s"] for r in ours)
                              * 1e3}
    if not args.no_reference:
        ref = run_child("bench_train.py", ["--framework", "ours", *common], args.threads,
                        env={"TINYGRAD_LAB_KERNELS": "0"})
        row["ours (NumPy reference)"] = ref["throughput"]
        row["ours / reference"] = ours_tp / ref["throughput"]
    if ratios:
        row["PyTorch eager"] = statistics.median(r["throughput"] for r in torch)
        row["ours / PyTorch"] = statistics.median(ratios)
        row["lowest round"], row["highest round"] = min(ratios), max(ratios)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="compare this tree with the checkout in DIR (same run, alternating)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternations: ours vs PyTorch (default 1), or with --baseline "
                             "this tree vs DIR (default 3)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the NumPy-reference run (TINYGRAD_LAB_KERNELS=0)")
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
    if args.baseline is not None:
        compare_with_baseline(args)
        return
    rounds = 1 if args.rounds is None else args.rounds
    if rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    report = Report("bench_train", args.threads, meta={"rounds": rounds})
    have_torch = torch_available()
    for workload in args.workloads:
        row = _ours_vs_torch(workload, args, rounds, have_torch)
        report.rows.append(row)
        print(row, flush=True)
    if not have_torch:
        report.notes.append("PyTorch not installed: pip install torch==2.13.0 for its column")
    cols = ["workload", "unit", "ours", "ours (NumPy reference)", "PyTorch eager",
            "ours / PyTorch", "lowest round", "highest round", "ours / reference", "ours step ms"]
    json_path, md_path = report.write(cols)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
