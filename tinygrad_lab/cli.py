"""`tinygrad-lab` (and `python -m tinygrad_lab`): train, sample, kernels, info, bench scaling,
bench distributed, estimate.

`mpiexec -n N tinygrad-lab train TARGET --distributed` trains data-parallel over N ranks: the
recipe's --batch-size is the global batch, threads per rank default to this process's cores over
the ranks on the node, and only rank 0 writes to stdout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tinygrad_lab import recipes
from tinygrad_lab.plot import MissingMatplotlib


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one clear line on stderr, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinygrad-lab", description="tinygrad_lab command line")
    parser.add_argument("--threads", type=int, help="threads for Numba kernels and BLAS")
    parser.add_argument("--reference", action="store_true",
                        help="run on the pure-NumPy reference path (no Numba kernels)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train a model on data shipped with the package")
    targets = train.add_subparsers(dest="target", required=True, parser_class=_Parser,
                                   metavar="TARGET")
    for name in recipes.RECIPES:
        recipe = recipes.get(name)
        summary = (recipe.__doc__ or "").strip().splitlines()[0].replace("%", "%%")
        target = targets.add_parser(name, help=summary)
        recipe.add_arguments(target)
        _add_device_argument(target, "train on")
        target.add_argument("--distributed", action="store_true",
                            help="data-parallel over the MPI ranks (run under mpiexec -n N; "
                            "--batch-size stays the global batch, split over the ranks)")
    sample = sub.add_parser("sample", help="generate text from a saved language-model checkpoint")
    sample.add_argument("checkpoint", help="a .npz checkpoint written by `train ... --save`")
    sample.add_argument("--length", type=int, default=500, help="characters to generate")
    sample.add_argument("--prompt", default="\n", help="text to start from")
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=int, default=0,
                        help="sample from the k likeliest (0 = all)")
    sample.add_argument("--seed", type=int, default=0)
    _add_device_argument(sample, "run the model on")
    from tinygrad_lab.explain import commands as explain_commands

    explain_commands.add_arguments(sub.add_parser(
        "explain", help="draw what a checkpoint's predictions rest on (saliency, integrated "
        "gradients) or where its attention looks"))
    from tinygrad_lab.backends import DEFAULT_DEVICE, DEVICES

    kernels = sub.add_parser("kernels", help="list or compile a device's kernels (the CPU's)")
    kernels.add_argument("--warm", action="store_true",
                         help="compile every kernel now and print each compile time")
    kernels.add_argument("--device", default=DEFAULT_DEVICE, choices=sorted(DEVICES),
                         help=f"the device type whose kernels to list (default {DEFAULT_DEVICE})")
    sub.add_parser("info", help="print versions, devices, kernel status and thread count")
    _add_scaling_commands(sub)
    return parser


def _add_device_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """--device NAME: cpu, cuda, cuda:N (checked when the command starts, in one line)."""
    if any(a.dest == "device" for a in parser._actions):  # a recipe that has its own
        return
    parser.add_argument("--device", default="cpu", metavar="DEVICE",
                        help=f"the device to {what}: cpu (default), cuda or cuda:N (needs "
                        "pip install 'tinygrad_lab[cuda]' and an NVIDIA GPU)")


def _check_device(args: argparse.Namespace) -> None:
    """Make the backend of --device now, so a bad name, a missing CuPy or a missing GPU stops
    the command in one line before any data loads."""
    device = getattr(args, "device", None)
    if device is None or args.command not in ("train", "sample", "bench"):
        return
    if args.command == "bench" and device.partition(":")[0] != "cuda":
        return  # its children name other devices (the test stand-in registers there)
    from tinygrad_lab.backends import get_backend

    try:
        get_backend(device)
    except RuntimeError as e:  # the CUDA backend's one-line reasons
        raise ValueError(str(e)) from None


def _add_scaling_commands(sub: argparse._SubParsersAction) -> None:
    """`bench scaling` (the sweep) and `estimate` (memory and epoch time from its fit)."""
    from tinygrad_lab.scaling.grids import FAMILIES

    bench = sub.add_parser("bench", help="benchmarks that ship with the package")
    kinds = bench.add_subparsers(dest="bench", required=True, parser_class=_Parser,
                                 metavar="BENCH")
    scaling = kinds.add_parser("scaling", help="memory and throughput against model size, "
                               "ours beside PyTorch, with fits and plots")
    scaling.add_argument("--quick", action="store_true",
                         help="three small sizes per family, one round (about a minute)")
    scaling.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    scaling.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    # also accepted after `scaling` (SUPPRESS: unless given, the global options' values stay)
    scaling.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                         help="threads of each child (default: the global --threads)")
    scaling.add_argument("--reference", action="store_true", default=argparse.SUPPRESS,
                         help="ours on the NumPy reference path")
    scaling.add_argument("--out", type=Path, metavar="DIR", help="where the CSV, JSON, "
                         "markdown and plots go (default benchmarks/results/scaling[-quick] "
                         "in a checkout, else ./scaling-results[-quick])")
    scaling.add_argument("--no-torch", action="store_true", help="ours only, even with PyTorch")
    scaling.add_argument("--resume", action="store_true",
                         help="keep the finished rows in DIR whose settings match; run the rest")
    scaling.add_argument("--rounds", type=int,
                         help="ours/PyTorch alternations per size (default 2, --quick 1)")
    scaling.add_argument("--no-plots", action="store_true", help="CSV, JSON and markdown only")
    dist = kinds.add_parser("distributed", help="data-parallel steps on 1 and 2 MPI ranks "
                            "(throughput, communication share, bytes per step); --project: "
                            "ring all-reduce time at 8-1,024 ranks on paper")
    dist.add_argument("--quick", action="store_true", help="the MLP only, 10 steps per run")
    dist.add_argument("--families", nargs="+", choices=("mlp", "gpt"), default=["mlp", "gpt"])
    dist.add_argument("--ranks", nargs="+", type=int, default=[1, 2],
                      help="rank counts to run (default 1 2); threads per rank = cores // ranks")
    dist.add_argument("--steps", type=int, help="timed steps per run (default 40, --quick 10)")
    dist.add_argument("--rounds", type=int, help="passes over the rank counts, the order "
                      "flipped each pass; medians reported (default 2, --quick 1)")
    dist.add_argument("--bucket-mb", type=float, default=25.0,
                      help="DataParallel bucket size in MiB (default 25)")
    dist.add_argument("--out", type=Path, metavar="DIR", help="where the JSON and markdown go "
                      "(default benchmarks/results/distributed[-quick] in a checkout, else "
                      "./distributed-results[-quick])")
    dist.add_argument("--project", action="store_true", help="print the communication volume "
                      "per step of each model here and the projected ring all-reduce time at "
                      "8, 64 and 1,024 ranks (measures each model's step here; no MPI)")
    estimate = sub.add_parser("estimate", help="predicted memory by category and time per "
                              "epoch of a model, from a scaling sweep's fit")
    estimate.add_argument("model", help="mlp, cnn or gpt (or mnist-mlp, mnist-cnn, "
                          "shakespeare-gpt): the default sweep's base size of that family")
    estimate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          dest="settings", help="a config knob, e.g. d_model=256 or "
                          "hidden=1024,1024 (repeatable)")
    estimate.add_argument("--batch-size", type=int, required=True)
    estimate.add_argument("--dataset-size", type=int, required=True,
                          help="samples per epoch (sequences of block_size tokens for gpt)")
    estimate.add_argument("--device", default="cpu")
    estimate.add_argument("--results", type=Path, metavar="DIR",
                          help="the sweep to use (default: the default sweep's folder, else "
                          "the quick one's)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (0 ok, 1 an error shown in one line, 2 bad arguments,
    130 interrupted, 141 stdout closed early as in `tinygrad-lab kernels | head`).
    `--reference` holds for this call only: the kernel switch is restored when it returns, so
    an in-process caller (a test, a notebook) keeps its own."""
    from tinygrad_lab import helpers

    kernels = helpers.kernels_enabled()
    try:
        status = _main(argv)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        # stdout's reader left: nothing more to say; point stdout at /dev/null so that the
        # interpreter's final flush does not print "Exception ignored ... BrokenPipeError"
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141
    finally:
        helpers.set_kernels(kernels)


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    from tinygrad_lab import helpers

    if args.threads is not None:
        if args.threads < 1:
            print("tinygrad-lab: error: --threads must be >= 1", file=sys.stderr)
            return 2
        helpers.set_num_threads(args.threads)
    if args.reference:
        helpers.set_kernels(False)
    try:
        _check_device(args)
        if args.command == "train" and args.distributed:
            _join_world(args.threads)
        if args.command == "train":
            _train(args)
        elif args.command == "sample":
            return _sample(args)
        elif args.command == "explain":
            from tinygrad_lab.explain import commands as explain_commands

            print(explain_commands.run(args))
        elif args.command == "kernels":
            return _kernels(args)
        elif args.command == "info":
            return _info()
        elif args.command == "bench" and args.bench == "distributed":
            return _bench_distributed(args)
        elif args.command == "bench":
            return _bench_scaling(args)
        elif args.command == "estimate":
            return _estimate(args)
    except BrokenPipeError:
        raise  # main's: stdout's reader left, not an error to report
    except (ValueError, FloatingPointError, OSError) as e:  # OSError: e.g. --save unwritable
        print(f"tinygrad-lab: error: {e}", file=sys.stderr)
        return 1
    except MissingMatplotlib as e:  # --plot without the `plot` extra: one line, like the above
        print(f"tinygrad-lab: error: {e}", file=sys.stderr)
        return 1
    except MemoryError as e:  # e.g. --hidden 100000000, or a file announcing terabytes
        detail = str(e).strip().splitlines()[0] if str(e).strip() else "an allocation failed"
        print(f"tinygrad-lab: error: out of memory: {detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C: 130; SIGTERM during `train`: 143
        print(f"tinygrad-lab: {str(e) or 'interrupted'}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", 2))
    return 0


def _train(args: argparse.Namespace) -> None:
    """Run a recipe; SIGTERM stops it as Ctrl-C does (the loop writes the last completed
    step's checkpoint when --save is given), with exit status 143."""
    import signal
    import threading

    from tinygrad_lab.train import Interrupted

    def on_sigterm(signum: int, frame: object) -> None:
        raise Interrupted("terminated (SIGTERM)", signum)

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        recipes.get(args.target).run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _join_world(threads: int | None) -> None:
    """`train --distributed`: join the MPI world (a world of one outside mpiexec), give each
    rank cores / (ranks on this node) threads unless --threads says otherwise, so that
    `mpiexec -n 2` on 2 cores does not oversubscribe, and silence stdout on ranks other than 0
    (errors still reach stderr from every rank)."""
    from tinygrad_lab import distributed as dist
    from tinygrad_lab import helpers

    world = dist.init()
    if threads is None:
        helpers.set_num_threads(max(1, helpers.available_cores() // world.local_size))
    if world.rank != 0:
        sys.stdout = open(os.devnull, "w")  # for the life of the process


def _sample(args: argparse.Namespace) -> int:
    """Load a checkpoint and hand it to the recipe that wrote it (its `sample` function)."""
    from tinygrad_lab.serialization import load_checkpoint

    if args.length < 0 or args.top_k < 0:
        raise ValueError("--length and --top-k must be >= 0")
    if not 0 < args.temperature < float("inf"):  # also rejects nan
        raise ValueError(f"--temperature must be a finite number > 0, got {args.temperature}")
    try:
        state, meta = load_checkpoint(args.checkpoint)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {args.checkpoint} does not exist") from None
    name = meta.get("recipe") if isinstance(meta, dict) else None
    if not isinstance(name, str) or name not in recipes.RECIPES or not hasattr(
            recipes.get(name), "sample"):
        raise ValueError(f"{args.checkpoint}: written by {name!r}, which cannot sample text")
    try:
        text = recipes.get(name).sample(state, meta, args)
    except (KeyError, TypeError, IndexError, AttributeError) as e:  # foreign or partial metadata
        what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise ValueError(f"{args.checkpoint}: its metadata does not describe a {name} model "
                         f"({type(e).__name__}: {what})") from None
    print(text)
    return 0


def _kernels(args: argparse.Namespace) -> int:
    from tinygrad_lab.backends import DEVICES

    if not args.warm:
        table = DEVICES[args.device].kernels
        if not table:
            print(f"tinygrad-lab: no kernels registered for {args.device}", file=sys.stderr)
        for name, target in sorted(table.items()):
            print(f"{name:<34} {target}")
        return 0
    from tinygrad_lab.kernels_tool import warm

    warm(verbose=True, device=args.device)
    return 0


def _info() -> int:
    """What this install runs on: versions, each registered device, kernels, threads."""
    import importlib.metadata
    import platform

    import numpy as np

    import tinygrad_lab
    from tinygrad_lab import helpers
    from tinygrad_lab.backends import DEVICES, get_backend
    from tinygrad_lab.kernels import CPU_KERNELS

    print(f"tinygrad_lab {tinygrad_lab.__version__}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}")
    for name in DEVICES:
        try:
            get_backend(name)
            status = "available"
        except (ImportError, RuntimeError) as e:  # e.g. CuPy missing, or no GPU
            status = "unavailable: " + (str(e).splitlines() or [type(e).__name__])[0]
        print(f"device {name}: {status}")
    try:
        numba = "Numba " + importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        numba = "Numba not installed"
    switch = "on" if helpers.kernels_enabled() else "off (reference path)"
    print(f"kernels: {switch}; {len(CPU_KERNELS)} CPU kernels registered ({numba})")
    pools = helpers.thread_banner().partition(" (")[2]  # "Numba 2, BLAS 2)": what they run on
    print(f"threads: {helpers.num_threads()} ({pools}")
    return 0


def _bench_scaling(args: argparse.Namespace) -> int:
    from tinygrad_lab import helpers
    from tinygrad_lab.scaling.sweep import SweepSettings, run_sweep

    settings = SweepSettings(families=tuple(args.families), quick=args.quick, device=args.device,
                             reference=args.reference, threads=args.threads or
                             helpers.num_threads(), torch=not args.no_torch, rounds=args.rounds,
                             out=args.out, resume=args.resume, plots=not args.no_plots)
    rows = run_sweep(settings)
    assert settings.out is not None
    print((settings.out / "scaling.md").read_text())
    print(f"wrote {settings.out}")
    return 0 if rows else 1


def _bench_distributed(args: argparse.Namespace) -> int:
    from tinygrad_lab import helpers

    if args.project:
        from tinygrad_lab.scaling import allreduce

        print(allreduce.markdown(allreduce.projection(), helpers.num_threads()), end="")
        return 0
    from tinygrad_lab.scaling.distributed_bench import DistributedSettings, run_bench

    settings = DistributedSettings(families=tuple(args.families), ranks=tuple(args.ranks),
                                   quick=args.quick, steps=args.steps, rounds=args.rounds,
                                   bucket_mb=args.bucket_mb,
                                   out=args.out)
    try:
        run_bench(settings)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"tinygrad-lab: error: {e}", file=sys.stderr)
        return 1
    assert settings.out is not None
    print((settings.out / "distributed.md").read_text())
    print(f"wrote {settings.out}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from tinygrad_lab.scaling import estimate
    from tinygrad_lab.scaling.sweep import default_out

    results = ([args.results] if args.results else
               [default_out(False, args.device, args.reference),
                default_out(True, args.device, args.reference)])
    plan = estimate.plan(args.model, args.batch_size, args.dataset_size, args.device,
                         args.settings, results)
    print(estimate.render(plan, args.dataset_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
