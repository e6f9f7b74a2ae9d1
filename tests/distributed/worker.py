"""The rank side of tests/test_distributed.py: run under `mpiexec -n N python worker.py OUT
SCENARIO...`; rank 0 writes OUT (JSON: per scenario, the largest differences found).

Each equivalence scenario trains k steps on N ranks with per-rank batch b and, on every rank,
the same model from the same seed in one process with batch N*b (no communication), then
compares: `max_abs` (each rank's parameters against the single process, worst over the ranks),
`close` (at most 1 when np.allclose(rtol=1e-9, atol=1e-12) holds) and `ranks_max_abs` (rank
against rank). Models run in float64, so the tolerances
the test asserts are tight. `abort` is the failure scenario: rank 1 raises mid-run.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import tinygrad_lab as tl
from tinygrad_lab import distributed as dist
from tinygrad_lab import models, nn, optim
from tinygrad_lab.memory.predict import optimizer_state_bytes
from tinygrad_lab.nn import functional as F
from tinygrad_lab.train import train_step

WORLD = dist.init()
R, RANK = WORLD.size, WORLD.rank
Batch = tuple[np.ndarray, np.ndarray]


def f64(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    for _, b in model.named_buffers():
        b.data = b.data.astype(np.float64)
    return model


def params(model: nn.Module) -> list[np.ndarray]:
    return [p.numpy().copy() for p in model.parameters()]


def compare(dist_state: list[np.ndarray], ref_state: list[np.ndarray]) -> dict[str, float]:
    """Worst differences over the ranks: against the single process, and between ranks."""
    abs_err = max(float(np.max(np.abs(a - b))) for a, b in zip(dist_state, ref_state))
    # as np.allclose(rtol=1e-9, atol=1e-12): at most 1 when every element is that close
    close = max(float(np.max(np.abs(a - b) / (1e-12 + 1e-9 * np.abs(b))))
                for a, b in zip(dist_state, ref_state))
    flat = np.concatenate([a.reshape(-1) for a in dist_state])
    gathered = dist.all_gather(tl.Tensor(flat)).numpy()  # (R, P)
    ranks = float(np.max(np.abs(gathered - gathered[0])))
    worst = dist.all_reduce_scalars({"abs": abs_err, "close": close}, "max")
    return {"max_abs": worst["abs"], "close": worst["close"], "ranks_max_abs": ranks}


def classification_loss(model: nn.Module, batch: Batch) -> tl.Tensor:
    return F.cross_entropy(model(tl.Tensor(batch[0])), batch[1])


def lm_loss(model: nn.Module, batch: Batch) -> tl.Tensor:
    logits = model(batch[0])  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[1].reshape(-1))


def run_pair(make_model: Callable[[], nn.Module], make_opts: Callable[[nn.Module], Any],
             x: np.ndarray, y: np.ndarray, b: int, steps: int, loss_fn: Any,
             bucket_mb: float = 0.001, sync_bn: bool = False,
             make_ref_opts: Callable[[nn.Module], Any] | None = None) -> dict[str, Any]:
    """k steps of DataParallel over R ranks (sampler shards, per-rank batch b) against one
    process with batch R*b over the sampler's global order (optimizers from make_ref_opts,
    default make_opts)."""
    sampler = dist.DistributedSampler(len(x), seed=3)
    order, mine = sampler.global_order(), sampler.indices()
    model = make_model()
    if sync_bn:
        model = dist.convert_sync_batchnorm(model)
    dp = dist.DataParallel(model, bucket_mb=bucket_mb)
    opts = make_opts(model)
    early = []
    for j in range(steps):
        idx = mine[j * b:(j + 1) * b]
        train_step(dp, (x[idx], y[idx]), loss_fn, opts, grad_hook=dp.grad_hook)
        early.append(dp.buckets_in_backward)
    ref = make_model()
    ref_opts = (make_ref_opts or make_opts)(ref)
    for j in range(steps):
        idx = order[j * R * b:(j + 1) * R * b]
        train_step(ref, (x[idx], y[idx]), loss_fn, ref_opts)
    out = compare(params(model), params(ref))
    out["buckets"] = len(dp.buckets)
    out["bytes_per_step"] = dp.bytes_per_step
    out["buckets_in_backward"] = min(early)
    if sync_bn:  # SyncBatchNorm: the running statistics are the global batch's too
        bufs = [v.numpy() for _, v in model.named_buffers()]
        ref_bufs = [v.numpy() for _, v in ref.named_buffers()]
        out["buffers_max_abs"] = max(float(np.max(np.abs(a - c))) for a, c in zip(bufs, ref_bufs))
    dp.remove_hooks()
    return out


def data(n: int, features: tuple[int, ...], classes: int, seed: int = 1) -> Batch:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *features)), rng.integers(0, classes, n)


def mlp() -> nn.Module:
    tl.manual_seed(0)
    return f64(models.MLP(models.MLPConfig(inputs=6, hidden=(16, 8), classes=3)))


def adam(model: nn.Module) -> optim.Optimizer:
    return optim.Adam(model.parameters(), lr=1e-2)


def scenario_mlp() -> dict[str, Any]:
    b, steps = 4, 3
    x, y = data(R * b * steps, (6,), 3)
    return run_pair(mlp, adam, x, y, b, steps, classification_loss)


def cnn_bn() -> nn.Module:
    tl.manual_seed(0)
    config = models.CNNConfig(image=8, channels=(3,), hidden=8, classes=3, dropout=0.0,
                              batch_norm=True)
    return f64(models.CNN(config))


def scenario_cnn_syncbn() -> dict[str, Any]:
    b, steps = 3, 2
    x, y = data(R * b * steps, (1, 8, 8), 3)
    return run_pair(cnn_bn, adam, x, y, b, steps, classification_loss, sync_bn=True)


def scenario_cnn_localbn() -> dict[str, Any]:
    """Plain BatchNorm2d under DataParallel: each rank normalises its own batch, which equals
    one process that runs each rank's b samples through the model separately (ghost batches)
    and averages the R losses; only the parameters are compared (running stats are per rank)."""
    b = 3
    x, y = data(R * b, (1, 8, 8), 3)
    model = cnn_bn()
    dp = dist.DataParallel(model)
    opt = adam(model)
    mine = slice(RANK * b, (RANK + 1) * b)
    train_step(dp, (x[mine], y[mine]), classification_loss, opt, grad_hook=dp.grad_hook)
    ref = cnn_bn()

    def ghost_loss(m: nn.Module, batch: Batch) -> tl.Tensor:
        losses = [classification_loss(m, (batch[0][r * b:(r + 1) * b], batch[1][r * b:(r + 1) * b]))
                  for r in range(R)]
        total = losses[0]
        for extra in losses[1:]:
            total = total + extra
        return total / R

    train_step(ref, (x, y), ghost_loss, adam(ref))
    dp.remove_hooks()
    return compare(params(model), params(ref))


def gpt() -> nn.Module:
    tl.manual_seed(0)
    config = models.GPTConfig(vocab_size=11, block_size=8, d_model=16, num_heads=2,
                              num_layers=2, d_ff=32)
    return f64(models.GPT(config))


def scenario_gpt() -> dict[str, Any]:
    b, steps, t = 2, 2, 8
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 11, (R * b * steps, t + 1))
    return run_pair(gpt, lambda m: models.configure_optimizers(m, lr=1e-2, weight_decay=0.1),
                    ids[:, :-1], ids[:, 1:], b, steps, lm_loss)


def scenario_uneven() -> dict[str, Any]:
    """10 samples: (a) the sampler pads to a multiple of R (every rank the same number of
    steps), equivalent to one process over the padded order; (b) one global batch of 10 split
    unevenly (4/3/3 over 3 ranks) with dp.weight = the rank's count, equivalent to one process
    with batch 10, and the weighted loss equals the single process's."""
    x, y = data(10, (6,), 3, seed=5)
    sampler = dist.DistributedSampler(10, seed=3)
    steps = -(-len(sampler) // 2)
    padded = run_pair(mlp, adam, x, y, 2, steps, classification_loss)
    dropped = dist.DistributedSampler(10, seed=3, drop_last=True)
    shards = dist.all_gather(tl.Tensor(np.resize(sampler.indices(), len(sampler)))).numpy()
    parts = np.array_split(np.arange(10), R)
    model = mlp()
    dp = dist.DataParallel(model)
    opt = adam(model)
    mine = parts[RANK]
    dp.weight = len(mine)
    out = train_step(dp, (x[mine], y[mine]), classification_loss, opt, grad_hook=dp.grad_hook)
    loss = dist.all_reduce_scalars({"loss": float(out.loss.item())}, weights=len(mine))["loss"]
    ref = mlp()
    ref_out = train_step(ref, (x, y), classification_loss, adam(ref))
    weighted = compare(params(model), params(ref))
    dp.remove_hooks()
    return {"padded": padded, "weighted": weighted,
            "loss_abs": abs(loss - float(ref_out.loss.item())),
            "sampler_len": len(sampler), "dropped_len": len(dropped),
            "shards_cover": sorted(set(shards.reshape(-1).tolist())) == list(range(10))}


def scenario_broadcast() -> dict[str, Any]:
    """Models seeded by rank (diverged); broadcast_parameters makes every rank rank 0's."""
    tl.manual_seed(RANK)
    model = f64(models.MLP(models.MLPConfig(inputs=6, hidden=(8,), classes=3)))
    model.layers[0].weight.data += RANK  # surely different
    flat = lambda: tl.Tensor(np.concatenate([p.reshape(-1) for p in params(model)]))  # noqa: E731
    before = dist.all_gather(flat()).numpy()
    dist.broadcast_parameters(model)
    after = dist.all_gather(flat()).numpy()
    return {"diverged_before": float(np.max(np.abs(before - before[0]))),
            "max_abs_after": float(np.max(np.abs(after - after[0]))),
            "equals_rank0_before": bool(np.array_equal(after[0], before[0]))}


def scenario_zero() -> dict[str, Any]:
    """ZeRO-1 against plain DataParallel, both Adam, 3 steps; then the optimizer-state bytes
    this rank holds, measured by tl.memory, against plain Adam's."""
    b, steps = 4, 3
    x, y = data(R * b * steps, (6,), 3)
    results = {}
    for kind in ("plain", "zero"):
        model = mlp()
        dp = dist.DataParallel(model, bucket_mb=0.001)
        opt = (adam(model) if kind == "plain" else
               dist.ZeroRedundancyOptimizer(optim.Adam, model.parameters(), lr=1e-2))
        gc.collect()
        with tl.memory.track() as tracker:
            for j in range(steps):
                mine = slice((j * R + RANK) * b, (j * R + RANK + 1) * b)
                train_step(dp, (x[mine], y[mine]), classification_loss, opt,
                           grad_hook=dp.grad_hook)
            state_bytes = tracker.live(category="optimizer_state")
        results[kind] = (params(model), state_bytes, optimizer_state_bytes(opt, model.parameters()))
        dp.remove_hooks()
        del model, dp, opt
    plain, zero = results["plain"], results["zero"]
    out = compare(zero[0], plain[0])
    out.update(plain_state_bytes=plain[1], zero_state_bytes=zero[1], zero_predicted=zero[2],
               zero_state_bytes_max=dist.all_reduce_scalars({"b": zero[1]}, "max")["b"],
               zero_state_bytes_sum=dist.all_reduce_scalars({"b": zero[1]}, "sum")["b"])
    return out


def grouped_adamw(model: nn.Module) -> optim.Optimizer:
    """Two parameter groups with different lr, weight_decay and betas: weights and biases."""
    weights = [p for p in model.parameters() if p.ndim > 1]
    biases = [p for p in model.parameters() if p.ndim == 1]
    return optim.AdamW([{"params": weights, "lr": 1e-2, "weight_decay": 0.1},
                        {"params": biases, "lr": 3e-2, "weight_decay": 0.0,
                         "betas": (0.8, 0.99)}], lr=1e-3)


def scenario_zero_groups() -> dict[str, Any]:
    """ZeRO-1 over an AdamW of two parameter groups against one process with the same groups;
    then whether this rank's state dict names its views in the right groups."""
    b, steps = 4, 3
    x, y = data(R * b * steps, (6,), 3)
    made: list[Any] = []

    def sharded(model: nn.Module) -> Any:
        made.append(dist.shard_optimizer(grouped_adamw(model)))
        return made[-1]

    out = run_pair(mlp, sharded, x, y, b, steps, classification_loss,
                   make_ref_opts=grouped_adamw)
    zero = made[0]
    state = zero.state_dict()
    indices = sorted(i for g in state["param_groups"] for i in g["params"])
    with_state = sorted(int(i) for i, e in state["state"].items() if e is not None)
    ok = (indices == list(range(len(zero.local_optimizer.params))) == with_state
          and [(g["lr"], g["weight_decay"], tuple(g["betas"])) for g in state["param_groups"]]
          == [(1e-2, 0.1, (0.9, 0.999)), (3e-2, 0.0, (0.8, 0.99))])
    zero.load_state_dict(state)  # its own slice back: accepted
    out["state_dict_ok"] = dist.all_reduce_scalars({"ok": float(ok)}, "min")["ok"] == 1.0
    return out


def scenario_unused() -> dict[str, Any]:
    """Rank 0 never uses the second head (data-dependent control flow): its gradients count as
    zeros there, the ranks' hooks fire in different orders, and the buckets still go out in
    one order. Equals one process that averages the ranks' losses, each on its own path."""
    b = 4
    x, y = data(R * b, (6,), 3, seed=7)

    def make() -> nn.Module:
        tl.manual_seed(0)
        return f64(nn.Sequential(nn.Linear(6, 8, activation="tanh"), nn.Linear(8, 3),
                                 nn.Linear(8, 3)))

    def loss_on(m: nn.Module, r: int, rows: slice) -> tl.Tensor:
        h = m.layers[0](tl.Tensor(x[rows]))
        logits = m.layers[1](h) if r == 0 else m.layers[1](h) + m.layers[2](h)
        return F.cross_entropy(logits, y[rows])

    model = make()
    dp = dist.DataParallel(model, bucket_mb=0.0001)  # a bucket per parameter
    mine = slice(RANK * b, (RANK + 1) * b)
    train_step(dp, (x, y), lambda m, _: loss_on(m, RANK, mine), adam(model),
               grad_hook=dp.grad_hook)
    ref = make()

    def averaged(m: nn.Module, _: Batch) -> tl.Tensor:
        total = loss_on(m, 0, slice(0, b))
        for r in range(1, R):
            total = total + loss_on(m, r, slice(r * b, (r + 1) * b))
        return total / R

    train_step(ref, (x, y), averaged, adam(ref))
    dp.remove_hooks()
    out = compare(params(model), params(ref))
    out["buckets"] = len(dp.buckets)
    return out


def scenario_standin() -> dict[str, Any]:
    """The MLP with DataParallel and ZeRO-1 on the stand-in device (the non-CPU code path:
    device arrays, no kernels), against one process with plain Adam on the stand-in device."""
    from tinygrad_lab.testing import standin

    standin.register()
    b, steps = 4, 2
    x, y = data(R * b * steps, (6,), 3)
    return run_pair(lambda: mlp().to("standin"),
                    lambda m: dist.ZeroRedundancyOptimizer(optim.Adam, m.parameters(), lr=1e-2),
                    x, y, b, steps, standin_loss, make_ref_opts=adam)


def standin_loss(model: nn.Module, batch: Batch) -> tl.Tensor:
    return F.cross_entropy(model(tl.Tensor(batch[0], device="standin")), batch[1])


def scenario_abort() -> dict[str, Any]:
    """Rank 1 raises while the others wait in an all-reduce: mpiexec must end them all."""
    dist.barrier()
    if RANK == 1:
        raise ValueError("boom from rank 1")
    dist.all_reduce(tl.Tensor(np.ones(3)))
    return {"unreachable": True}


SCENARIOS = {"mlp": scenario_mlp, "cnn_syncbn": scenario_cnn_syncbn,
             "cnn_localbn": scenario_cnn_localbn, "gpt": scenario_gpt,
             "uneven": scenario_uneven, "broadcast": scenario_broadcast,
             "zero": scenario_zero, "zero_groups": scenario_zero_groups,
             "unused": scenario_unused, "standin": scenario_standin,
             "abort": scenario_abort}


def main(out: str, names: list[str]) -> None:
    results = {"world_size": R}
    for name in names:
        results[name] = SCENARIOS[name]()
    if dist.is_main():
        with open(out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
