"""Training targets for `tinygrad-lab train NAME`: each a module with add_arguments() and run().

`tinygrad-lab train NAME --distributed` (under `mpiexec -n N`) trains data-parallel; `ranks(args,
batch_size)` tells a recipe its rank and its share of the global batch.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

RECIPES: dict[str, str] = {
    "mnist-mlp": "mnist_mlp",
    "mnist-cnn": "mnist_cnn",
    "shakespeare-gpt": "shakespeare_gpt",
    "shakespeare-lstm": "shakespeare_lstm",
}


def get(name: str) -> ModuleType:
    if name not in RECIPES:
        raise KeyError(name)
    return importlib.import_module(f"tinygrad_lab.recipes.{RECIPES[name]}")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a `--distributed` run (rank 0 of a world of one without
    it). `--batch-size` is the global batch: each rank trains on `batch` = global / size of
    it, rows [rank * batch, (rank + 1) * batch) of a batch every rank draws alike."""

    rank: int = 0
    size: int = 1
    batch: int = 1  # this rank's share of the global batch
    distributed: bool = False

    @property
    def rows(self) -> slice:
        return slice(self.rank * self.batch, (self.rank + 1) * self.batch)

    def banner(self) -> str:
        """What the recipe's first line adds: the world size and the batch split."""
        if not self.distributed:
            return ""
        if self.size == 1:
            return ", world 1 (--distributed without mpiexec: one process)"
        return (f", world {self.size} (data-parallel: global batch {self.batch * self.size} = "
                f"{self.size} ranks x {self.batch})")

    def sampler(self, n: int, seed: int) -> Any:
        """Each epoch, this rank's indices of one permutation of n samples shared by the ranks
        (rank r takes every size-th from r, so the ranks' step-j batches of `batch` together
        are the one-process step-j batch); `set_epoch(epoch)` before iterating."""
        from tinygrad_lab import distributed as dist

        return dist.DistributedSampler(n, seed=seed, shuffle=True)

    def reseed(self, seed: int) -> None:
        """Give the global generator a stream of this rank's own, from (seed, rank), so that
        dropout masks differ between ranks as they differ between the rows of one batch (and
        do not replay the draws that built the weights)."""
        if self.distributed:
            import numpy as np

            from tinygrad_lab.random import manual_seed

            manual_seed(int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0]))


def ranks(args: argparse.Namespace, batch_size: int) -> Ranks:
    """This process's Ranks for a recipe's arguments (a world of one unless args.distributed);
    ValueError when the world size does not divide the global batch."""
    if not getattr(args, "distributed", False):
        return Ranks(batch=batch_size)
    from tinygrad_lab import distributed as dist

    world = dist.init()
    if batch_size % world.size:
        raise ValueError(f"--batch-size {batch_size} (the global batch) must be divisible by "
                         f"the {world.size} ranks")
    return Ranks(world.rank, world.size, batch_size // world.size, True)


# --- argument types and checkpoint flags shared by the recipes -----------------------------------
def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (`--lr inf` and `--lr nan` are refused at parsing)."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (`--weight-decay nan` is refused at parsing)."""
    value = _finite(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _finite(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def add_checkpoint_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """--save PATH, --save-every N (in `unit`: steps or epochs), --resume PATH."""
    parser.add_argument("--save", metavar="PATH", help="write a resumable checkpoint here at "
                        "the end, on Ctrl-C / SIGTERM and every --save-every "
                        "(.safetensors, or .npz by that name)")
    parser.add_argument("--save-every", type=int, default=0, metavar="N",
                        help=f"also write the checkpoint every N {unit} (0 = only at the end)")
    parser.add_argument("--resume", metavar="PATH", help="continue the run a checkpoint of "
                        "the same recipe and settings stopped at (bit for bit, with the same "
                        "thread count)")


# settings that may differ between a run and its resumption
_NOT_CONFIG = {"save", "save_every", "resume", "threads", "reference", "command", "target",
               "distributed", "sample_length", "device", "plot", "report"}


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings a resumed run must share (what the checkpoint records as `args`)."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_CONFIG}


def prepare_checkpoint(args: argparse.Namespace, name: str) -> Any:
    """Before any data loads: refuse a --save path that cannot be written, --save-every
    without --save, and a --resume checkpoint of another recipe or other settings. Returns
    the loaded checkpoint to resume from (for `train.fit(resume=)`), or None."""
    from tinygrad_lab.serialization import check_writable, load_checkpoint

    if getattr(args, "save_every", 0) < 0:
        raise ValueError(f"--save-every must be >= 0, got {args.save_every}")
    if getattr(args, "save_every", 0) and not args.save:
        raise ValueError("--save-every needs --save PATH")
    if args.save:
        check_writable(args.save)
    if not getattr(args, "resume", None):
        return None
    try:
        loaded = load_checkpoint(args.resume, with_arrays=True)
    except FileNotFoundError:
        raise ValueError(f"cannot resume: {args.resume} does not exist") from None
    meta = loaded[1]
    if meta.get("recipe") != name or "train" not in meta:
        raise ValueError(f"cannot resume from {args.resume}: it is a checkpoint of "
                         f"{meta.get('recipe')!r}{'' if 'train' in meta else ' (weights only)'}"
                         f", not a resumable {name} run")
    saved, ours = meta.get("args", {}), run_config(args)
    changed = [k for k in sorted(set(saved) | set(ours)) if saved.get(k) != ours.get(k)]
    if changed:
        diffs = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)} (now {ours.get(k)})"
                          for k in changed)
        raise ValueError(f"cannot resume from {args.resume}: it was trained with {diffs}")
    return loaded
