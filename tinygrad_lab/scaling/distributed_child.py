"""One rank of `tinygrad-lab bench distributed`, started by `mpiexec -n N`:

    mpiexec -n 2 python -m tinygrad_lab.scaling.distributed_child --family mlp \
        --config '{"inputs": 784, ...}' --batch 128 --context 1 --warmup 3 --steps 30

Each rank builds the same model (seed 0), takes its rows of one synthetic global batch, wraps the
model in DataParallel and runs warm-up steps, then a fixed number of timed steps (fixed, not
"until a time is reached": the ranks must agree on the count or one would wait in an all-reduce
forever). Rank 0 prints one JSON line: the step time and DataParallel's communication wait
(medians, averaged over the ranks), the bytes it all-reduced per step, and the thread count.
The parent sets the thread variables before mpiexec starts (`distributed_bench.run_child`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any


def _loss(model: Any, batch: Any) -> Any:
    from tinygrad_lab.nn import functional as F

    x, y = batch
    return F.cross_entropy(model(x), y)  # logits (B, classes) or (B, T, V)


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    import tinygrad_lab as tl
    from tinygrad_lab import distributed as dist
    from tinygrad_lab import helpers
    from tinygrad_lab.optim import Adam
    from tinygrad_lab.scaling.workloads import build_model, synthetic_batch
    from tinygrad_lab.train import to_device, train_step

    helpers.set_num_threads(args.threads)
    world = dist.init()
    if args.batch % world.size:
        raise ValueError(f"--batch {args.batch} is not divisible by {world.size} ranks")
    config = json.loads(args.config)
    tl.manual_seed(0)
    model = build_model(args.family, config)
    x, y = synthetic_batch(args.family, config, args.batch, args.context, seed=0)
    share = args.batch // world.size
    rows = slice(world.rank * share, (world.rank + 1) * share)
    batch = to_device((x[rows], y[rows]), "cpu")  # this rank's rows of the global batch
    opt = Adam(model.parameters(), lr=1e-3)
    dp = dist.DataParallel(model, bucket_mb=args.bucket_mb)
    dist.broadcast_parameters(model)

    def step() -> float:
        train_step(model, batch, _loss, opt, grad_hook=dp.grad_hook).loss.item()
        return float(dp.comm_seconds)

    for _ in range(args.warmup):
        step()
    dist.barrier()
    times, comms = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        comm = step()
        times.append(time.perf_counter() - start)
        comms.append(comm)
    step_s, comm_s = statistics.median(times), statistics.median(comms)
    share_s = statistics.median(c / t for c, t in zip(comms, times))
    mean = dist.all_reduce_scalars({"step_s": step_s, "comm_s": comm_s, "comm_share": share_s},
                                   op="mean")
    slowest = dist.all_reduce_scalars({"step_s": step_s}, op="max")["step_s"]
    if world.rank != 0:
        return None
    return {"ranks": world.size, "threads": helpers.num_threads(), "batch": args.batch,
            "batch_per_rank": share, "context": args.context,
            "params": model.num_parameters(), "bytes_per_step": int(dp.bytes_per_step),
            "step_s": mean["step_s"], "slowest_rank_step_s": slowest, "comm_s": mean["comm_s"],
            "comm_share": mean["comm_share"], "steps": args.steps, "warmup": args.warmup,
            "bucket_mb": args.bucket_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=("mlp", "cnn", "gpt"))
    parser.add_argument("--config", required=True, help="the model config as JSON")
    parser.add_argument("--batch", type=int, required=True, help="the global batch")
    parser.add_argument("--context", type=int, default=1)
    parser.add_argument("--threads", type=int, required=True, help="threads per rank")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--bucket-mb", type=float, default=25.0)
    result = run(parser.parse_args())
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
