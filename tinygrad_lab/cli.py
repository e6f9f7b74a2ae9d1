"""`tinygrad-lab` (and `python -m tinygrad_lab`): train, sample, kernels, info."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tinygrad_lab import recipes


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
    sample = sub.add_parser("sample", help="generate text from a saved language-model checkpoint")
    sample.add_argument("checkpoint", help="a .npz checkpoint written by `train ... --save`")
    sample.add_argument("--length", type=int, default=500, help="characters to generate")
    sample.add_argument("--prompt", default="\n", help="text to start from")
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=int, default=0,
                        help="sample from the k likeliest (0 = all)")
    sample.add_argument("--seed", type=int, default=0)
    from tinygrad_lab.backends import DEFAULT_DEVICE, DEVICES

    kernels = sub.add_parser("kernels", help="list or compile a device's kernels (the CPU's)")
    kernels.add_argument("--warm", action="store_true",
                         help="compile every kernel now and print each compile time")
    kernels.add_argument("--device", default=DEFAULT_DEVICE, choices=sorted(DEVICES),
                         help=f"the device type whose kernels to list (default {DEFAULT_DEVICE})")
    sub.add_parser("info", help="print versions, devices, kernel status and thread count")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
        if args.command == "train":
            recipes.get(args.target).run(args)
        elif args.command == "sample":
            return _sample(args)
        elif args.command == "kernels":
            return _kernels(args)
        elif args.command == "info":
            return _info()
    except (ValueError, FloatingPointError, OSError) as e:  # OSError: e.g. --save unwritable
        print(f"tinygrad-lab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tinygrad-lab: interrupted", file=sys.stderr)
        return 130
    return 0


def _sample(args: argparse.Namespace) -> int:
    """Load a checkpoint and hand it to the recipe that wrote it (its `sample` function)."""
    from tinygrad_lab.serialization import load_checkpoint

    if args.length < 0 or args.temperature <= 0 or args.top_k < 0:
        raise ValueError("--length and --top-k must be >= 0 and --temperature > 0")
    try:
        state, meta = load_checkpoint(args.checkpoint)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {args.checkpoint} does not exist") from None
    name = meta.get("recipe")
    if name not in recipes.RECIPES or not hasattr(recipes.get(name), "sample"):
        raise ValueError(f"{args.checkpoint}: written by {name!r}, which cannot sample text")
    text = recipes.get(name).sample(state, meta, args)
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
    print(f"threads: {helpers.num_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
