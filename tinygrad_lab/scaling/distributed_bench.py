"""`tinygrad-lab bench distributed`: data-parallel training steps of the same global batch on 1
and 2 ranks (`mpiexec -n 1`, `mpiexec -n 2`) on this machine, the cores shared out (threads per
rank = cores // ranks): throughput, its ratio to one rank, the share of the step spent waiting
on communication (DataParallel.comm_seconds / step), and the bytes all-reduced per step.

    settings = DistributedSettings(quick=True, out=Path("results"))
    rows = run_bench(settings)       # writes distributed.json and distributed.md

`--project` prints the paper projection instead (`tinygrad_lab.scaling.allreduce`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinygrad_lab.helpers import available_cores as cores
from tinygrad_lab.scaling.grids import GRIDS
from tinygrad_lab.scaling.sweep import THREAD_VARS, _git_sha, atomic_write

JSON_NAME, MD_NAME = "distributed.json", "distributed.md"
INSTALL = "pip install 'tinygrad_lab[distributed]'"
WORKLOADS: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "mlp": ("MNIST MLP 784-512-10", GRIDS["mlp"].base, 128, 1),
    "gpt": ("GPT 4 x d128, context 64", GRIDS["gpt"].base, 16, 64),
}
"""family -> (label, config, global batch, context): the recipes' default models and batches."""


@dataclass
class DistributedSettings:
    """What to run. `quick`: the MLP only, fewer steps (for tests and a first look)."""

    families: tuple[str, ...] = ("mlp", "gpt")
    ranks: tuple[int, ...] = (1, 2)
    quick: bool = False
    steps: int | None = None  # timed steps per run (default 40, quick 10)
    rounds: int | None = None  # passes over the rank counts, order flipped each (default 2,
    # quick 1): a machine whose speed drifts favours neither
    warmup: int = 3
    bucket_mb: float = 25.0
    out: Path | None = None
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.quick:
            self.families = ("mlp",)
        for family in self.families:
            if family not in WORKLOADS:
                raise ValueError(f"unknown workload {family!r}; choose from "
                                 f"{', '.join(WORKLOADS)}")
        if not self.ranks or min(self.ranks) < 1:
            raise ValueError("--ranks must be >= 1")
        if self.steps is None:
            self.steps = 10 if self.quick else 40
        if self.rounds is None:
            self.rounds = 1 if self.quick else 2
        if self.steps < 1 or self.warmup < 0 or self.rounds < 1:
            raise ValueError("--steps and --rounds must be >= 1 and --warmup >= 0")
        if self.out is None:
            self.out = default_out(self.quick)
        self.out = Path(self.out)


def default_out(quick: bool) -> Path:
    """benchmarks/results/distributed[-quick] in a source checkout, else
    ./distributed-results[-quick]."""
    suffix = "-quick" if quick else ""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "benchmarks" / "bench_train.py").is_file():
        return repo / "benchmarks" / "results" / f"distributed{suffix}"
    return Path.cwd() / f"distributed-results{suffix}"


def find_mpiexec() -> str:
    """The mpiexec beside this Python (a venv's, from the mpich wheel), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError(f"bench distributed needs mpiexec and mpi4py: {INSTALL}")
    return found


def run_child(family: str, ranks: int, settings: DistributedSettings,
              mpiexec: str) -> dict[str, Any]:
    """`mpiexec -n RANKS python -m tinygrad_lab.scaling.distributed_child ...` with every
    thread variable pinned to cores // ranks; rank 0's JSON line."""
    _, config, batch, context = WORKLOADS[family]
    threads = max(1, cores() // ranks)
    env = dict(os.environ)
    env.update({var: str(threads) for var in THREAD_VARS})
    command = [mpiexec, "-n", str(ranks), sys.executable, "-m",
               "tinygrad_lab.scaling.distributed_child", "--family", family, "--config",
               json.dumps(config), "--batch", str(batch), "--context", str(context),
               "--threads", str(threads), "--warmup", str(settings.warmup), "--steps",
               str(settings.steps), "--bucket-mb", str(settings.bucket_mb)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=settings.timeout_s)
    if proc.returncode == -signal.SIGINT:
        raise KeyboardInterrupt
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{family} on {ranks} ranks failed ({proc.returncode}): {tail}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{family} on {ranks} ranks printed no JSON line")


def make_row(family: str, results: list[dict[str, Any]],
             base: dict[str, Any] | None) -> dict[str, Any]:
    """One rank count's figures: the medians of its rounds; `base` is the same workload's row
    for the first rank count."""
    label, _, _, context = WORKLOADS[family]
    row = {"family": family, "workload": label, **results[0], "rounds": len(results),
           "unit": "tokens/s" if context > 1 else "samples/s"}
    for key in ("step_s", "slowest_rank_step_s", "comm_s", "comm_share"):
        row[key] = statistics.median(r[key] for r in results)
    row["step_s_rounds"] = [r["step_s"] for r in results]
    row["items_per_s"] = row["batch"] * context / row["step_s"]
    row["speedup"] = (base["step_s"] / row["step_s"]) if base else 1.0
    return row


def run_bench(settings: DistributedSettings, log: Any = print) -> list[dict[str, Any]]:
    """Every workload on every rank count; writes JSON and markdown to settings.out."""
    mpiexec = find_mpiexec()
    assert settings.out is not None
    meta = {"benchmark": "distributed", "git_sha": _git_sha(),
            "python": platform.python_version(), "machine": platform.machine(),
            "cores": cores(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "mpiexec": mpiexec, "quick": settings.quick, "steps": settings.steps,
            "rounds": settings.rounds,
            "warmup": settings.warmup, "bucket_mb": settings.bucket_mb,
            "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "data": "synthetic batches; every rank takes its rows of the same global batch"}
    rows: list[dict[str, Any]] = []
    assert settings.rounds is not None
    for family in settings.families:
        results: dict[int, list[dict[str, Any]]] = {n: [] for n in settings.ranks}
        for r in range(settings.rounds):
            for ranks in settings.ranks if r % 2 == 0 else settings.ranks[::-1]:
                results[ranks].append(run_child(family, ranks, settings, mpiexec))
        base = None
        for ranks in settings.ranks:
            row = make_row(family, results[ranks], base)
            base = base or row
            rows.append(row)
            log(row_line(row))
    atomic_write(settings.out / JSON_NAME, json.dumps(
        {"benchmark": "distributed", "meta": meta, "rows": rows}, indent=1))
    atomic_write(settings.out / MD_NAME, markdown(meta, rows))
    return rows


def row_line(row: dict[str, Any]) -> str:
    return (f"{row['family']}: {row['ranks']} rank(s) x {row['threads']} thread(s): "
            f"{row['step_s'] * 1e3:.2f} ms/step, {row['items_per_s']:,.0f} {row['unit']}, "
            f"{row['speedup']:.2f}x, communication {100 * row['comm_share']:.0f} % of the step, "
            f"{row['bytes_per_step'] / 1e6:.2f} MB all-reduced per step")


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [f"# Data-parallel training steps on this machine ({meta['cores']} cores)", "",
             f"{meta['date']}, git {meta['git_sha']}, {meta['steps']} timed steps after "
             f"{meta['warmup']} warm-up, medians of {meta['rounds']} rounds (the order of the "
             f"rank counts flipped each round), buckets of {meta['bucket_mb']:g} MiB; the same "
             "global batch on every rank count, the cores shared out (threads per rank = cores "
             f"// ranks); load before the run {meta['load_1min']:.2f}.", "",
             "| workload | ranks x threads | global batch (per rank) | step | throughput | "
             "vs 1 rank | waiting on communication | all-reduced per step |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['ranks']} x {r['threads']} | {r['batch']} "
            f"({r['batch_per_rank']}) | {r['step_s'] * 1e3:.2f} ms | {r['items_per_s']:,.0f} "
            f"{r['unit']} | {r['speedup']:.2f}x | {r['comm_s'] * 1e3:.2f} ms "
            f"({100 * r['comm_share']:.0f} %) | {r['bytes_per_step'] / 1e6:.2f} MB |")
    return "\n".join(lines) + "\n"


__all__ = ["DistributedSettings", "WORKLOADS", "cores", "default_out", "find_mpiexec",
           "make_row", "markdown", "row_line", "run_bench", "run_child"]
