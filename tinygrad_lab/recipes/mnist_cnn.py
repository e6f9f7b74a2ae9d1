"""A LeNet-style CNN on MNIST (2 conv + 2 max-pool + 2 dense, Adam): ~99 percent test accuracy.

No percent sign in the line above: argparse formats it as the `train` help.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tinygrad_lab as tl
from tinygrad_lab import datasets, helpers, nn, optim
from tinygrad_lab.nn import functional as F
from tinygrad_lab.random import generator, manual_seed

NAME = "mnist-cnn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.25,
                        help="dropout before the last dense layer (0 = none)")
    parser.add_argument("--limit", type=int, default=0,
                        help="train on the first N training images only (0 = all 60000)")
    parser.add_argument("--save", metavar="PATH", help="write the trained weights (.npz) here")


def build(dropout: float = 0.25) -> nn.Sequential:
    """(B, 1, 28, 28) -> (B, 10) logits; PyTorch's default initialisation throughout."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, activation="relu"), nn.MaxPool2d(2),  # (B, 32, 13, 13)
        nn.Conv2d(32, 64, 3, activation="relu"), nn.MaxPool2d(2),  # (B, 64, 5, 5)
        nn.Flatten(),  # (B, 1600)
        nn.Linear(1600, 128, activation="relu", init="fan_in_uniform"),
        nn.Dropout(dropout),
        nn.Linear(128, 10, init="fan_in_uniform"),
    )


def load_images() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as float32 images (N, 1, 28, 28) in [0, 1], labels as int64."""
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    x_train = x_train.reshape(len(x_train), 1, 28, 28).astype(np.float32) / 255
    x_test = x_test.reshape(len(x_test), 1, 28, 28).astype(np.float32) / 255
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray,
             batch_size: int = 1000) -> tuple[float, float]:
    """(mean loss, accuracy) in eval mode, without building a graph."""
    model.eval()
    total_loss, correct = 0.0, 0
    with tl.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(tl.Tensor(x[i:i + batch_size]))
            labels = y[i:i + batch_size]
            total_loss += F.cross_entropy(logits, labels).item() * len(labels)
            correct += int((logits.numpy().argmax(axis=1) == labels).sum())
    model.train()
    return total_loss / max(len(x), 1), correct / max(len(x), 1)


def train_epoch(model: nn.Module, opt: optim.Optimizer, x: np.ndarray, y: np.ndarray,
                batch_size: int) -> dict[str, float]:
    """One shuffled pass; returns mean loss, accuracy, seconds and samples/s."""
    order = generator().permutation(len(x))
    total_loss, correct = 0.0, 0
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        xb, yb = x[idx], y[idx]
        logits = model(tl.Tensor(xb))
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.numpy().argmax(axis=1) == yb).sum())
    seconds = time.perf_counter() - start
    return {"loss": total_loss / len(x), "accuracy": correct / len(x), "seconds": seconds,
            "samples_per_second": len(x) / seconds if seconds > 0 else 0.0}


def run(args: argparse.Namespace) -> dict[str, float]:
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:  # `not > 0` catches NaN
        raise ValueError("--epochs, --batch-size and --lr must be positive")
    if not 0 <= args.dropout < 1 or args.limit < 0:
        raise ValueError("--dropout must lie in [0, 1) and --limit be >= 0")
    manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_images()
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    model = build(args.dropout)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    print(f"{NAME}: conv 32 3x3 -> pool 2 -> conv 64 3x3 -> pool 2 -> dense 128 -> 10, "
          f"{model.num_parameters():,} parameters, Adam lr {args.lr}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {len(x_train):,} images, {helpers.num_threads()} threads, "
          f"kernels {'on' if helpers.kernels_enabled() else 'off (NumPy reference)'}", flush=True)
    rates, started = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        logs = train_epoch(model, opt, x_train, y_train, args.batch_size)
        test_loss, test_accuracy = evaluate(model, x_test, y_test)
        rates.append(logs["samples_per_second"])
        print(f"epoch {epoch}/{args.epochs} - {logs['seconds']:.1f}s - loss {logs['loss']:.4f} "
              f"- accuracy {logs['accuracy']:.4f} - test accuracy {test_accuracy:.4f} - "
              f"{logs['samples_per_second']:,.0f} samples/s", flush=True)
    elapsed = time.perf_counter() - started
    print(f"test loss {test_loss:.4f} - test accuracy {test_accuracy:.4f} - {elapsed:.0f}s in "
          f"all - median training {float(np.median(rates)):,.0f} samples/s")
    if args.save:
        tl.save(model.state_dict(), args.save)
        print(f"weights written to {args.save}")
    return {"test_loss": test_loss, "test_accuracy": test_accuracy,
            "samples_per_second": float(np.median(rates))}
