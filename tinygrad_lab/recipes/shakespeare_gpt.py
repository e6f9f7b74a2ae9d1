"""A character-level GPT (decoder-only Transformer) on tiny-shakespeare, after nanoGPT's
shakespeare_char: context 64, d_model 128, 4 heads, 4 pre-LayerNorm layers, GELU MLP 512.

Shape letters: B batch, T time (context), C model width, V vocabulary (65 characters).

    tinygrad-lab train shakespeare-gpt --save gpt.npz
    tinygrad-lab sample gpt.npz --length 500 --prompt "ROMEO:"
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from tinygrad_lab import datasets, helpers, optim, schedulers, train
from tinygrad_lab.models.gpt import GPT, GPTConfig, configure_optimizers, generate
from tinygrad_lab.nn import functional as F
from tinygrad_lab.random import manual_seed
from tinygrad_lab.recipes import (
    add_checkpoint_arguments,
    nonnegative_float,
    positive_float,
    prepare_checkpoint,
    ranks,
    reporting,
    run_config,
)


# --- data ---------------------------------------------------------------------------------------
def get_batch(ids: np.ndarray, batch: int, context: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random windows: x (B, T) and the next characters y (B, T)."""
    starts = rng.integers(0, len(ids) - context - 1, size=batch)
    offsets = starts[:, None] + np.arange(context)[None, :]  # (B, T)
    return ids[offsets], ids[offsets + 1]


def fixed_batches(ids: np.ndarray, n: int, batch: int, context: int,
                  seed: int = 1234) -> list[tuple[np.ndarray, np.ndarray]]:
    """The same held-out windows every evaluation, so val losses compare across steps."""
    rng = np.random.default_rng(seed)
    return [get_batch(ids, batch, context, rng) for _ in range(n)]


def evaluate(model: GPT, batches: list[tuple[Any, Any]]) -> float:
    """Mean cross-entropy (nats per character) over the batches (the loop runs it in eval mode
    without a graph)."""
    return float(np.mean([F.cross_entropy(model(x), y).item() for x, y in batches]))


def loss_fn(model: GPT, batch: train.Batch) -> Any:
    x, y = batch  # (B, T) ids and next ids
    return F.cross_entropy(model(x), y)  # logits (B, T, V)


def build_schedules(opts: list[optim.AdamW], warmup: int, steps: int) -> list[Any]:
    """Per optimizer: linear warm-up over `warmup` steps, then cosine decay to a tenth of the
    peak learning rate at the last step (nanoGPT's schedule)."""
    out = []
    for opt in opts:
        cosine = schedulers.CosineAnnealingLR(opt, T_max=max(1, steps - warmup),
                                              eta_min=opt.lr / 10)
        if warmup == 0:
            out.append(cosine)
            continue
        ramp = schedulers.LinearWarmup(opt, warmup)
        out.append(schedulers.SequentialLR(opt, [ramp, cosine], milestones=[warmup]))
    return out


# --- command line -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--context", type=int, default=64, help="block size (characters)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=0, help="MLP width (0 = 4 * d-model)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--lr", type=positive_float, default=1e-3,
                        help="AdamW peak learning rate")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    parser.add_argument("--weight-decay", type=nonnegative_float, default=0.1,
                        help="AdamW decay of the weight matrices (not biases, gains, embeddings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-batches", type=int, default=20,
                        help="fixed held-out batches of 32 windows for the validation loss")
    add_checkpoint_arguments(parser, "steps")
    reporting.add_arguments(parser)


def check_arguments(args: argparse.Namespace) -> None:
    """Reject bad settings before any data is loaded, naming the flag and the value."""
    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--context", args.context), ("--d-model", args.d_model),
                        ("--heads", args.heads), ("--layers", args.layers),
                        ("--eval-every", args.eval_every), ("--eval-batches", args.eval_batches)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.d_model % args.heads:
        raise ValueError(f"--d-model {args.d_model} must be divisible by --heads {args.heads}")
    if not 0 < args.lr < float("inf"):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.d_ff < 0 or args.warmup < 0 or not 0 <= args.weight_decay < float("inf"):
        raise ValueError("--d-ff, --warmup and --weight-decay must be >= 0")
    reporting.check_arguments(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_arguments(args)
    resume = prepare_checkpoint(args, "shakespeare-gpt")  # before any data loads
    manual_seed(args.seed)
    train_ids, val_ids, vocab = datasets.load_shakespeare_chars(0.1)
    if min(len(train_ids), len(val_ids)) <= args.context + 1:
        raise ValueError(f"--context {args.context} is longer than the text (training "
                         f"{len(train_ids):,}, validation {len(val_ids):,} characters)")
    config = GPTConfig(vocab_size=vocab.size, block_size=args.context, d_model=args.d_model,
                       num_heads=args.heads, num_layers=args.layers,
                       d_ff=args.d_ff or 4 * args.d_model, dropout=args.dropout)
    world = ranks(args, args.batch_size)
    model = GPT(config)
    world.reseed(args.seed)
    opts = configure_optimizers(model, args.lr, args.weight_decay)
    rng = np.random.default_rng(args.seed)  # the same windows on every rank: each takes its rows
    held_out = fixed_batches(val_ids, args.eval_batches, 32, args.context)
    tokens = args.batch_size * args.context
    print(f"shakespeare-gpt: {model.num_parameters():,} parameters; {config}; AdamW lr "
          f"{args.lr} (warm-up {args.warmup}, cosine), batch {args.batch_size}, {args.steps} "
          f"steps, {helpers.thread_banner()}{world.banner()}, kernels "
          f"{'on' if helpers.kernels_enabled() else 'off (NumPy reference)'}", flush=True)
    window: list[float] = []
    history: list[dict[str, float]] = []

    def report(step: int, logs: dict[str, float]) -> None:
        loop = printer.loop
        train_loss = float(np.mean(window)) if window else float("nan")
        history.append({"step": step, "train_loss": train_loss, "val_loss": logs["val_loss"]})
        progress.say(f"step {step:>6}: train loss {train_loss:.4f}, val loss "
                     f"{logs['val_loss']:.4f}, {tokens * step / loop.train_seconds:,.0f} "
                     f"tokens/s, {time.perf_counter() - start_all:.0f} s")
        window.clear()

    progress = reporting.Progress(args.steps, tokens, "tokens")
    printer = train.LambdaCallback(
        on_train_batch_end=lambda index, logs: window.append(logs["batch_loss"]),
        on_evaluate=report)
    stop = reporting.early_stopping(args, per="evaluation")  # one long epoch: per evaluation
    callbacks: list[train.Callback] = [progress, printer, *([stop] if stop else [])]
    checkpoint = train.Checkpointing(args.save, every=args.save_every, unit="steps", rngs=[rng],
                                     meta=lambda logs: {
        "recipe": "shakespeare-gpt", "config": asdict(config), "vocab": "".join(vocab.itos),
        "steps": args.steps, "val_loss": logs.get("val_loss"), "args": run_config(args)})
    def batches(epoch: int) -> Any:
        for _ in range(args.steps):
            x, y = get_batch(train_ids, args.batch_size, args.context, rng)  # (B, T) each
            yield x[world.rows], y[world.rows]

    start_all = time.perf_counter()
    fitted = train.fit(
        model, batches, loss_fn, opts, clip=1.0, checkpoint=checkpoint, resume=resume,
        schedulers=build_schedules(opts, args.warmup, args.steps),
        evaluate=lambda m: {"val_loss": evaluate(m, held_out)}, eval_every=args.eval_every,
        callbacks=callbacks, distributed=world.distributed, device=args.device)
    wall = time.perf_counter() - start_all
    val_loss = fitted.evaluations[-1]["val_loss"]
    if stop is not None and stop.best_weights is not None:  # the restored weights' figure
        val_loss = history[stop.best_epoch]["val_loss"]  # best_epoch: its evaluation's index
    train_seconds, steps = printer.loop.train_seconds, printer.loop.step
    print(f"final val loss {val_loss:.4f} nats/char after {steps} steps, {wall:.0f} s wall, "
          f"{tokens * steps / train_seconds:,.0f} training tokens/s", flush=True)
    reporting.write_curves({"step": [h["step"] for h in history],
                            "loss": [h["train_loss"] for h in history],
                            "val_loss": [h["val_loss"] for h in history]}, args, world.rank)
    if args.save:
        print(f"checkpoint written to {args.save}")
    return {"val_loss": val_loss, "wall_seconds": wall, "history": history,
            "tokens_per_second": tokens * steps / train_seconds}


# --- sampling -----------------------------------------------------------------------------------
def sample(state: dict[str, np.ndarray], meta: dict[str, Any], args: argparse.Namespace) -> str:
    """Rebuild the model a checkpoint describes and return prompt + args.length sampled chars."""
    config = GPTConfig(**meta["config"])
    model = GPT(config)
    model.load_state_dict(state)
    model.to(args.device)
    vocab = datasets.CharVocab(meta["vocab"])
    prompt = args.prompt if args.prompt else "\n"
    ids = vocab.encode(prompt)
    rng = np.random.default_rng(args.seed)
    out = generate(model, ids, args.length, args.temperature, args.top_k, rng)
    return vocab.decode(out)
