"""Char-level LSTM on tiny-shakespeare (char-rnn): Embedding -> LSTM -> Linear to the vocabulary.

Shapes: T time steps (--seq-len), B windows per batch (--batch-size), E embedding size, H hidden
size, V vocabulary (65 characters).

Training is truncated backpropagation through time over random windows: each step draws B
windows of T + 1 characters from the first 90% of the text, predicts characters 1..T from
characters 0..T-1 starting from a zero state, and updates with Adam and gradient clipping; the
learning rate warms up linearly, then follows a cosine down to a tenth. An "epoch" is
--steps-per-epoch steps. The validation loss (nats per character) is the mean over fixed windows
spread evenly over the last 10%, so it is the same measurement every epoch.

`sample(state, meta, args)` rebuilds the model from a checkpoint's meta and generates text; it
backs `tinygrad-lab sample CHECKPOINT`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from tinygrad_lab import datasets, helpers, optim, train
from tinygrad_lab.models import char_lstm
from tinygrad_lab.models.char_lstm import CharLSTM, CharLSTMConfig
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
from tinygrad_lab.schedulers import CosineAnnealingLR, LinearWarmup, SequentialLR

NAME = "shakespeare-lstm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64, help="BPTT window (characters)")
    parser.add_argument("--embed", type=int, default=64, help="embedding size")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--lr", type=positive_float, default=3e-3,
                        help="Adam peak learning rate")
    parser.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    parser.add_argument("--clip", type=nonnegative_float, default=1.0,
                        help="max gradient norm (0 = off)")
    parser.add_argument("--eval-batches", type=int, default=8,
                        help="validation batches of --batch-size windows")
    parser.add_argument("--sample-length", type=int, default=300,
                        help="characters to print after training (0 = none)")
    parser.add_argument("--seed", type=int, default=0)
    add_checkpoint_arguments(parser, "epochs")
    reporting.add_arguments(parser)


def check_arguments(args: argparse.Namespace) -> None:
    for flag in ("epochs", "steps_per_epoch", "batch_size", "seq_len", "embed", "hidden",
                 "layers", "eval_batches"):
        value = getattr(args, flag)
        if value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if not 0 < args.lr < float("inf"):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    if args.warmup < 0 or not 0 <= args.clip < float("inf") or args.sample_length < 0:
        raise ValueError("--warmup, --clip and --sample-length must be >= 0")
    reporting.check_arguments(args)


def windows(ids: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-character targets, both (T, B), from windows at `starts` (B,)."""
    rows = ids[starts[:, None] + np.arange(seq_len + 1)]  # (B, T + 1)
    return rows[:, :-1].T, rows[:, 1:].T  # (T, B) each


def evaluate(model: CharLSTM, val_ids: np.ndarray, args: argparse.Namespace) -> float:
    """Mean cross-entropy (nats/char) over eval_batches * batch_size windows spread over val
    (the loop runs it in eval mode without a graph)."""
    count = args.eval_batches * args.batch_size
    starts = np.linspace(0, len(val_ids) - args.seq_len - 1, count).astype(np.int64)
    losses = []
    for chunk in np.split(starts, args.eval_batches):
        x, y = windows(val_ids, chunk, args.seq_len)
        logits, _ = model(x)
        losses.append(F.cross_entropy(logits, y).item())
    return float(np.mean(losses))


def loss_fn(model: CharLSTM, batch: train.Batch) -> Any:
    x, y = batch  # (T, B) ids and next ids
    logits, _ = model(x)  # (T, B, V)
    return F.cross_entropy(logits, y)


def run(args: argparse.Namespace) -> dict[str, float]:
    check_arguments(args)
    resume = prepare_checkpoint(args, NAME)  # before any data loads
    manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train_ids, val_ids, vocab = datasets.load_shakespeare_chars(0.1)
    if len(val_ids) <= args.seq_len + 1:
        raise ValueError(f"--seq-len {args.seq_len} is longer than the validation text")
    world = ranks(args, args.batch_size)
    config = CharLSTMConfig(vocab.size, args.embed, args.hidden, args.layers)
    model = CharLSTM(config)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    total = args.epochs * args.steps_per_epoch
    warmup = min(args.warmup, total - 1)
    cosine = CosineAnnealingLR(opt, T_max=max(total - warmup, 1), eta_min=args.lr / 10)
    schedule = (SequentialLR(opt, [LinearWarmup(opt, warmup), cosine], milestones=[warmup])
                if warmup else cosine)
    print(f"{NAME}: {len(train_ids):,} train / {len(val_ids):,} val chars, vocab {vocab.size}; "
          f"embed {args.embed} -> LSTM {args.hidden} x {args.layers} -> {vocab.size}, "
          f"{model.num_parameters():,} parameters; batch {args.batch_size} x {args.seq_len} "
          f"chars, Adam lr {args.lr} (warm-up {warmup}, cosine), clip {args.clip}, "
          f"{helpers.thread_banner()}{world.banner()}, kernels "
          f"{'on' if helpers.kernels_enabled() else 'off (NumPy reference)'}", flush=True)

    chars_per_step = args.batch_size * args.seq_len

    def batches(epoch: int) -> Any:  # every rank draws the same windows and takes its rows
        for _ in range(args.steps_per_epoch):
            starts = rng.integers(0, len(train_ids) - args.seq_len - 1, size=args.batch_size)
            yield windows(train_ids, starts[world.rows], args.seq_len)

    progress = reporting.Progress(total, chars_per_step, "chars")

    def report(epoch: int, logs: dict[str, float]) -> None:
        val = logs["val_loss"]
        progress.say(f"epoch {epoch + 1}/{args.epochs} - train loss {logs['loss']:.4f} - val "
                     f"loss {val:.4f} nats/char ({val / math.log(2):.3f} bits) - "
                     f"{logs['seconds']:.1f} s, "
                     f"{args.steps_per_epoch * chars_per_step / logs['seconds']:,.0f} chars/s")

    stop = reporting.early_stopping(args)
    callbacks: list[train.Callback] = [progress, train.LambdaCallback(on_epoch_end=report),
                                       *([stop] if stop else [])]
    checkpoint = train.Checkpointing(args.save, every=args.save_every, unit="epochs",
                                     rngs=[rng], meta=lambda logs: {
        "recipe": NAME, "config": {**asdict(config), "seq_len": args.seq_len},
        "vocab": "".join(vocab.itos), "val_loss": logs.get("val_loss"), "steps": total,
        "args": run_config(args)})
    start = time.perf_counter()
    history = train.fit(model, batches, loss_fn, opt, epochs=args.epochs,
                        clip=args.clip or None, schedulers=[schedule],
                        evaluate=lambda m: {"val_loss": evaluate(m, val_ids, args)},
                        callbacks=callbacks, distributed=world.distributed,
                        checkpoint=checkpoint, resume=resume, device=args.device)
    val_loss = history.epochs[-1]["val_loss"]
    if stop is not None and stop.best_weights is not None:  # the restored weights' figure
        val_loss = history.epochs[stop.best_epoch]["val_loss"]
    elapsed = time.perf_counter() - start
    print(f"trained {progress.loop.step} steps in {elapsed:.0f} s; val loss {val_loss:.4f} "
          "nats/char")
    reporting.write_curves(history, args, world.rank)
    if args.sample_length:
        sample_rng = np.random.default_rng(args.seed)
        text = generate(model, vocab, "\n", args.sample_length, 0.8, 0, sample_rng)
        print(f"--- sample (temperature 0.8) ---{text}\n---")
    if args.save:
        print(f"checkpoint written to {args.save}")
    return {"val_loss": val_loss, "seconds": elapsed}


def generate(model: CharLSTM, vocab: datasets.CharVocab, prompt: str, length: int,
             temperature: float, top_k: int, rng: np.random.Generator) -> str:
    """prompt + `length` sampled characters; the prompt is read first to set the state."""
    if not prompt:
        raise ValueError("the prompt must hold at least one character")
    ids = vocab.encode(prompt)  # (P,), raises on characters outside the vocabulary
    out = char_lstm.generate(model, ids, length, temperature, top_k, rng)
    return prompt + vocab.decode(out)


def sample(state: dict[str, np.ndarray], meta: dict[str, Any], args: argparse.Namespace) -> str:
    """Rebuild the model a checkpoint describes, load its weights, generate args.length chars."""
    config, vocab = meta["config"], datasets.CharVocab(meta["vocab"])
    model = CharLSTM(CharLSTMConfig(vocab.size, config["embed"], config["hidden"],
                                    config["layers"]))
    model.load_state_dict(state)
    model.to(args.device)
    rng = np.random.default_rng(args.seed)
    return generate(model, vocab, args.prompt, args.length, args.temperature, args.top_k, rng)
