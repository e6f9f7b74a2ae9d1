"""`tinygrad-lab explain RECIPE CHECKPOINT`: rebuild the model a recipe's checkpoint describes
and draw what its prediction rests on (mnist-cnn) or where its attention looks
(shakespeare-gpt)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_lab.plot import MissingMatplotlib

EXPLAINABLE = ("mnist-cnn", "shakespeare-gpt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", choices=EXPLAINABLE, help="the recipe that wrote CHECKPOINT")
    parser.add_argument("checkpoint", help="a checkpoint written by `train RECIPE --save PATH`")
    parser.add_argument("--index", type=int, default=0,
                        help="mnist-cnn: which test image to explain")
    parser.add_argument("--steps", type=int, default=64,
                        help="mnist-cnn: integrated-gradient steps")
    parser.add_argument("--prompt", default="ROMEO:",
                        help="shakespeare-gpt: the text whose attention is drawn")
    parser.add_argument("--out", default=None,
                        help="the PNG to write (default: RECIPE-explain.png here)")


def run(args: argparse.Namespace) -> str:
    """Write the picture; return what to print."""
    from tinygrad_lab.serialization import load_checkpoint

    try:
        state, meta = load_checkpoint(args.checkpoint)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {args.checkpoint} does not exist") from None
    written_by = meta.get("recipe") if isinstance(meta, dict) else None
    if written_by != args.recipe:
        raise ValueError(f"{args.checkpoint} was written by {written_by!r}, not {args.recipe!r}")
    out = Path(args.out or f"{args.recipe}-explain.png")
    try:
        if args.recipe == "mnist-cnn":
            return _mnist_cnn(state, meta, args, out)
        return _shakespeare_gpt(state, meta, args, out)
    except MissingMatplotlib as e:  # an ImportError: one line, like every other CLI error
        raise ValueError(str(e)) from None
    except (KeyError, TypeError) as e:  # foreign or partial metadata
        raise ValueError(f"{args.checkpoint}: its metadata does not describe a {args.recipe} "
                         f"model ({type(e).__name__}: {e})") from None


def _mnist_cnn(state: dict[str, np.ndarray], meta: dict[str, Any], args: argparse.Namespace,
               out: Path) -> str:
    from tinygrad_lab import explain
    from tinygrad_lab.explain.figures import attribution_figure
    from tinygrad_lab.models.cnn import CNN, CNNConfig
    from tinygrad_lab.recipes.mnist_cnn import load_images

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    model = CNN(CNNConfig(dropout=float(meta["args"].get("dropout", 0.25))))
    model.load_state_dict(state)
    _, (x_test, y_test) = load_images()
    if not 0 <= args.index < len(x_test):
        raise ValueError(f"--index must lie in [0, {len(x_test)}), got {args.index}")
    x = x_test[args.index:args.index + 1]  # (1, 1, 28, 28)
    ig = explain.integrated_gradients(model, x, steps=args.steps)
    predicted = int(ig.targets[0])
    maps = {"saliency |d score / d pixel|": explain.saliency(model, x, predicted)[0],
            "integrated gradients": ig.attributions[0],
            "occlusion (score drop)": explain.occlusion(model, x, predicted)[0]}
    title = (f"test image {args.index}: label {int(y_test[args.index])}, predicted "
             f"{predicted}")
    attribution_figure(x[0], maps, out, title)
    return (f"{title}; integrated gradients sum to the score change within "
            f"{abs(float(ig.delta[0])):.2g}; written to {out}")


def _shakespeare_gpt(state: dict[str, np.ndarray], meta: dict[str, Any],
                     args: argparse.Namespace, out: Path) -> str:
    from tinygrad_lab import datasets
    from tinygrad_lab.explain import attention_maps
    from tinygrad_lab.explain.figures import attention_figure
    from tinygrad_lab.models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(**meta["config"]))
    model.load_state_dict(state)
    vocab = datasets.CharVocab(meta["vocab"])
    if not args.prompt:
        raise ValueError("--prompt must not be empty")
    ids = vocab.encode(args.prompt)[-model.config.block_size:]
    maps = attention_maps(model, ids.reshape(1, -1))
    tokens = vocab.decode(ids)
    attention_figure(maps, list(tokens), out, f"attention of {args.prompt!r}")
    return (f"{len(maps)} layers x {maps[0].shape[1]} heads of attention over "
            f"{len(tokens)} characters written to {out}")
