"""The founding example: Keras' MNIST MLP (784 -> Dense 512 ReLU -> Dense 10 softmax, Adam)."""

from __future__ import annotations

import argparse

import numpy as np

from tinygrad_lab import datasets, helpers, keras, train
from tinygrad_lab.models.mlp import MLPConfig, keras_mlp
from tinygrad_lab.random import manual_seed
from tinygrad_lab.recipes import (
    add_checkpoint_arguments,
    positive_float,
    prepare_checkpoint,
    ranks,
    reporting,
    run_config,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--validation-split", type=float, default=0.0,
                        help="hold out the last fraction of the training images for "
                        "val_loss / val_accuracy (0 = none; 0 with --patience means 0.1)")
    parser.add_argument("--limit", type=int, default=0,
                        help="train on the first N training images only (0 = all 60000)")
    add_checkpoint_arguments(parser, "epochs")
    reporting.add_arguments(parser, classification=True)


def build(hidden: int = 512, lr: float = 1e-3) -> keras.Sequential:
    return keras_mlp(MLPConfig(hidden=(hidden,)), lr)


def load_flat() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as float32 vectors in [0, 1], labels as int64."""
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    x_train = x_train.reshape(len(x_train), 784).astype(np.float32) / 255
    x_test = x_test.reshape(len(x_test), 784).astype(np.float32) / 255
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def check_arguments(args: argparse.Namespace) -> None:
    """Reject bad settings before any data is loaded, naming the flag and the value."""
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                        ("--hidden", args.hidden)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if not 0 < args.lr < float("inf"):  # also catches nan
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    if not 0 <= args.validation_split < 1:
        raise ValueError(f"--validation-split must be in [0, 1), got {args.validation_split}")
    reporting.check_arguments(args)


def run(args: argparse.Namespace) -> dict[str, float]:
    check_arguments(args)
    resume = prepare_checkpoint(args, "mnist-mlp")  # before any data loads
    manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_flat()
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    model = build(args.hidden, args.lr)
    world = ranks(args, args.batch_size)  # keras.fit splits the global batch itself
    print(f"mnist-mlp: 784 -> {args.hidden} relu -> 10 softmax, Adam lr {args.lr}, batch "
          f"{args.batch_size}, {args.epochs} epochs, {helpers.thread_banner()}"
          f"{world.banner()}, kernels "
          f"{'on' if helpers.kernels_enabled() else 'off (NumPy reference)'}")
    stop = reporting.early_stopping(args)  # it needs val_ keys: a validation split
    split = args.validation_split or (0.1 if stop is not None else 0.0)
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=split, verbose=1, callbacks=[stop] if stop else [],
                        distributed=world.distributed, resume=resume, device=args.device,
                        checkpoint=train.Checkpointing(
                            args.save, every=args.save_every, unit="epochs",
                            meta={"recipe": "mnist-mlp", "args": run_config(args)}))
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    rates = history.history["samples_per_second"]
    print(f"test loss {loss:.4f} - test accuracy {accuracy:.4f} - median training "
          f"{float(np.median(rates)):,.0f} samples/s")
    if args.save and world.rank == 0:
        print(f"checkpoint written to {args.save}")
    reporting.write_curves(history, args, world.rank)
    out = {"test_loss": loss, "test_accuracy": accuracy,
           "samples_per_second": float(np.median(rates))}
    if args.report:
        out.update(reporting.report_classification(args, y_test, model.predict(x_test),
                                                   world.rank))
    return out
