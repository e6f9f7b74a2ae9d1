"""Data-parallel communication on paper: the gradient bytes each model here all-reduces per
step, and the time a ring all-reduce of them takes at N ranks on a stated network
(`tinygrad-lab bench distributed --project` prints the tables the README quotes).

Ring all-reduce of S bytes over N ranks (reduce-scatter, then all-gather, each N - 1 steps of
S / N bytes per rank), with per-rank link bandwidth B (bytes/s, each direction) and a latency
alpha per message:

    bytes sent per rank  = 2 (N - 1) / N * S
    t(N)                 = 2 (N - 1) / N * S / B + 2 (N - 1) * alpha      (per bucket for alpha)

Data-parallel training sends the gradients in buckets as backward produces them, so all but the
last bucket's all-reduce can overlap the rest of backward: a step waits about
max(t(last bucket), t(N) - t_backward). So t(N) / t_backward below 1 can be hidden, given buckets
smaller than the model (one bucket holding all the gradients, as DataParallel's default 25 MiB
is for every model here, starts only when backward ends and overlaps nothing); above 1 the step
is bound by communication whatever the buckets.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RANKS = (8, 64, 1024)
BUCKET_MB = 25.0  # DataParallel's default bucket size, in MiB
MiB = 1 << 20
BACKWARD_SHARE = 2 / 3  # of a step's compute: backward costs about twice the forward


@dataclass(frozen=True)
class Network:
    """A link per rank: bandwidth in bytes/s (each direction) and latency alpha in seconds."""

    name: str
    bandwidth: float
    latency: float
    note: str


NETWORKS = (
    Network("10 Gbit/s Ethernet", 10e9 / 8, 20e-6, "TCP; alpha 20 us"),
    Network("100 Gbit/s Ethernet", 100e9 / 8, 5e-6, "RDMA (RoCE); alpha 5 us"),
    Network("NVLink", 300e9, 2e-6, "A100 NVLink 3: 12 links x 25 GB/s each way; alpha 2 us"),
)


def ring_bytes_per_rank(nbytes: float, ranks: int) -> float:
    """Bytes each rank sends (and receives) in a ring all-reduce of `nbytes`: 2 (N-1)/N * S."""
    return 2 * (ranks - 1) / ranks * nbytes


def ring_allreduce_seconds(nbytes: float, ranks: int, bandwidth: float, latency: float,
                           bucket_bytes: float | None = None) -> float:
    """t = 2 (N-1)/N * S / B + buckets * 2 (N-1) * alpha; 0 for one rank. `bucket_bytes` splits
    S into ceil(S / bucket_bytes) all-reduces, each paying the latency term."""
    if ranks <= 1:
        return 0.0
    buckets = max(1, math.ceil(nbytes / bucket_bytes)) if bucket_bytes else 1
    return ring_bytes_per_rank(nbytes, ranks) / bandwidth + buckets * 2 * (ranks - 1) * latency


# --- the models here --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """A recipe's default model, its per-rank batch (the recipe default) and how to build one
    training step on synthetic data (None: not trained here, listed for scale)."""

    name: str
    batch: str
    params: int
    step: Callable[[], Callable[[], Any]] | None = None


def _workload_step(family: str, config: dict[str, Any], batch: int,
                   context: int = 1) -> Callable[[], Callable[[], Any]]:
    def make() -> Callable[[], Any]:
        from tinygrad_lab.scaling import workloads

        return workloads.build(family, config, batch, context).step
    return make


def _lstm_step() -> Callable[[], Any]:
    import numpy as np

    from tinygrad_lab import optim
    from tinygrad_lab.models import CharLSTM, CharLSTMConfig
    from tinygrad_lab.nn import functional as F
    from tinygrad_lab.train import to_device, train_step

    model = CharLSTM(CharLSTMConfig())
    opt = optim.Adam(model.parameters(), lr=1e-3)
    ids = np.random.default_rng(0).integers(0, 65, size=(65, 32))  # (T + 1, B)
    batch = to_device((ids[:-1], ids[1:]), "cpu")

    def loss_fn(m: Any, b: Any) -> Any:
        logits, _ = m(b[0])  # (T, B, V)
        return F.cross_entropy(logits, b[1])

    return lambda: train_step(model, batch, loss_fn, opt).loss.item()


def recipe_models() -> list[ModelEntry]:
    """The four recipes' default models (parameter counts built here) and GPT-2 small."""
    from tinygrad_lab import models
    from tinygrad_lab.scaling.grids import GRIDS

    mlp, cnn, gpt = GRIDS["mlp"].base, GRIDS["cnn"].base, GRIDS["gpt"].base
    return [
        ModelEntry("mnist-mlp (784-512-10)", "128", models.MLP(models.MLPConfig(**mlp))
                   .num_parameters(), _workload_step("mlp", mlp, 128)),
        ModelEntry("mnist-cnn (conv 32-64, dense 128)", "64", models.CNN(models.CNNConfig(
            **cnn)).num_parameters(), _workload_step("cnn", cnn, 64)),
        ModelEntry("shakespeare-lstm (64-256)", "32 x 64 chars",
                   models.CharLSTM(models.CharLSTMConfig()).num_parameters(), _lstm_step),
        ModelEntry("shakespeare-gpt (4 x d128)", "16 x 64 tokens",
                   models.GPT(models.GPTConfig(**gpt)).num_parameters(),
                   _workload_step("gpt", gpt, 16, 64)),
        ModelEntry("GPT-2 small, for scale", "-", 124_439_808),
    ]


def measure_step(make: Callable[[], Callable[[], Any]], steps: int = 5,
                 min_time: float = 0.3) -> float:
    """Median seconds of one training step (after warm-up steps), in this process."""
    step = make()
    for _ in range(3):  # the first calls load kernels and start thread pools
        step()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < steps or (time.perf_counter() - began < min_time and len(times) < 200):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def projection(measure: bool = True) -> dict[str, Any]:
    """Per model: parameters, gradient bytes (float32), the measured single-process step here
    (when `measure`) and, per network and N, the ring time and its ratio to the backward time
    (BACKWARD_SHARE of the step)."""
    rows = []
    for entry in recipe_models():
        nbytes = 4 * entry.params
        step_s = measure_step(entry.step) if measure and entry.step is not None else None
        row: dict[str, Any] = {"model": entry.name, "batch_per_rank": entry.batch,
                               "params": entry.params, "bytes": nbytes, "step_s": step_s,
                               "buckets": max(1, math.ceil(nbytes / (BUCKET_MB * MiB))),
                               "networks": {}}
        for net in NETWORKS:
            cells = row["networks"][net.name] = {}
            for n in RANKS:
                t = ring_allreduce_seconds(nbytes, n, net.bandwidth, net.latency,
                                           BUCKET_MB * MiB)
                cells[str(n)] = {"seconds": t, "per_backward": (t / (BACKWARD_SHARE * step_s)
                                                                if step_s else None)}
        rows.append(row)
    return {"ranks": list(RANKS), "bucket_mb": BUCKET_MB, "backward_share": BACKWARD_SHARE,
            "networks": [vars(n) for n in NETWORKS], "rows": rows}


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def markdown(proj: dict[str, Any], threads: int | None = None) -> str:
    """The two README tables: bytes per step, then ring time (and the exposed part) per
    network and N."""
    ranks = proj["ranks"]
    lines = ["Gradient bytes all-reduced per step (float32) and sent per rank by a ring "
             "(2 (N-1)/N x S); step = one process here, recipe batch"
             + (f", {threads} threads" if threads else "") + ":", "",
             "| model | parameters | S = gradient bytes | sent per rank, N = "
             + " / ".join(str(n) for n in ranks) + " | step here |",
             "|---|---:|---:|---:|---:|"]
    for row in proj["rows"]:
        sent = " / ".join(f"{ring_bytes_per_rank(row['bytes'], n) / 1e6:.2f}" for n in ranks)
        step = f"{row['step_s'] * 1e3:.1f} ms" if row["step_s"] is not None else "-"
        lines.append(f"| {row['model']} | {row['params']:,} | {row['bytes'] / 1e6:.2f} MB | "
                     f"{sent} MB | {step} |")
    lines += ["", "Ring all-reduce time per step, t = 2(N-1)/N S/B + 2(N-1) alpha, in ms; in "
              f"brackets t / t_backward with t_backward = {proj['backward_share']:.2g} x the "
              "step here (below 1x, buckets overlapping backward can hide it):", "",
              "| model | network | " + " | ".join(f"N = {n:,}" for n in ranks) + " |",
              "|---|---|" + "---:|" * len(ranks)]
    for row in proj["rows"]:
        for net in proj["networks"]:
            cells = []
            for n in ranks:
                cell = row["networks"][net["name"]][str(n)]
                text = _ms(cell["seconds"])
                ratio = cell["per_backward"]
                if ratio is not None:
                    text += (" (<0.01x)" if ratio < 0.01 else f" ({ratio:.2g}x)" if ratio < 10
                             else f" ({ratio:.0f}x)")
                cells.append(text)
            lines.append(f"| {row['model']} | {net['name']} | " + " | ".join(cells) + " |")
    lines += ["", "Networks: " + "; ".join(
        f"{n['name']} B = {n['bandwidth'] / 1e9:g} GB/s per rank each way ({n['note']})"
        for n in proj["networks"]) + f". Buckets of {proj['bucket_mb']:g} MiB (each pays the "
        "latency term)."]
    return "\n".join(lines) + "\n"


__all__ = ["BACKWARD_SHARE", "BUCKET_MB", "NETWORKS", "RANKS", "ModelEntry", "Network",
           "markdown", "measure_step", "projection", "recipe_models",
           "ring_allreduce_seconds", "ring_bytes_per_rank"]
