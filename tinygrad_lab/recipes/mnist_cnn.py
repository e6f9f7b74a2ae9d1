"""A LeNet-style CNN on MNIST (2 conv + 2 max-pool + 2 dense, Adam): ~99 percent test accuracy.

No percent sign in the line above: argparse formats it as the `train` help.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import tinygrad_lab as tl
from tinygrad_lab import datasets, helpers, nn, optim, train
from tinygrad_lab.function import no_grad
from tinygrad_lab.models.cnn import CNN, CNNConfig
from tinygrad_lab.nn import functional as F
from tinygrad_lab.random import generator, manual_seed
from tinygrad_lab.recipes import (
    add_checkpoint_arguments,
    positive_float,
    prepare_checkpoint,
    ranks,
    reporting,
    run_config,
)

NAME = "mnist-cnn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.25,
                        help="dropout before the last dense layer (0 = none)")
    parser.add_argument("--limit", type=int, default=0,
                        help="train on the first N training images only (0 = all 60000)")
    parser.add_argument("--validation-split", type=float, default=None, metavar="F",
                        help="hold out the last fraction F of the training images as a "
                        "validation set (val_loss, val_accuracy); default 0.1 with --patience, "
                        "else 0")
    add_checkpoint_arguments(parser, "epochs")
    reporting.add_arguments(parser, classification=True)


def load_images() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST as float32 images (N, 1, 28, 28) in [0, 1], labels as int64."""
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist()
    x_train = x_train.reshape(len(x_train), 1, 28, 28).astype(np.float32) / 255
    x_test = x_test.reshape(len(x_test), 1, 28, 28).astype(np.float32) / 255
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray,
             batch_size: int = 1000) -> dict[str, float]:
    """Mean loss and accuracy over (x, y) (the loop runs it in eval mode without a graph)."""
    device = model.parameters()[0].device
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model(tl.Tensor(x[i:i + batch_size], device=device))
        labels = y[i:i + batch_size]
        total_loss += F.cross_entropy(logits, labels).item() * len(labels)
        correct += int((logits.numpy().argmax(axis=1) == labels).sum())
    return {"test_loss": total_loss / max(len(x), 1), "test_accuracy": correct / max(len(x), 1)}


def loss_fn(model: nn.Module, batch: train.Batch) -> tuple[tl.Tensor, tl.Tensor]:
    x, y = batch  # (B, 1, 28, 28), (B,)
    logits = model(x)  # (B, 10)
    return F.cross_entropy(logits, y), logits


def correct_predictions(logits: tl.Tensor, batch: train.Batch) -> dict[str, float]:
    """Summed over the batch; the loop averages it over the epoch's samples."""
    return {"accuracy": float((logits.numpy().argmax(axis=1) == batch[1].numpy()).sum())}


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, sampler: Any = None,
                     epoch: int = 0) -> Any:
    """A fresh permutation of the training set each epoch, from the seeded generator; or, in a
    distributed run, this rank's indices from `sampler` (a DistributedSampler)."""
    if sampler is None:
        order = generator().permutation(len(x))
    else:
        sampler.set_epoch(epoch)
        order = np.fromiter(sampler, dtype=np.int64)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def run(args: argparse.Namespace) -> dict[str, float]:
    if args.epochs < 1 or args.batch_size < 1 or not 0 < args.lr < float("inf"):  # and NaN
        raise ValueError("--epochs, --batch-size and --lr must be positive (and finite)")
    if not 0 <= args.dropout < 1 or args.limit < 0:
        raise ValueError("--dropout must lie in [0, 1) and --limit be >= 0")
    split = args.validation_split
    if split is None:
        split = 0.1 if args.patience is not None else 0.0
    if not 0 <= split < 1:
        raise ValueError(f"--validation-split must be in [0, 1), got {split}")
    reporting.check_arguments(args)
    resume = prepare_checkpoint(args, NAME)  # before any data loads
    manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_images()
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    held = max(1, round(len(x_train) * split)) if split else 0
    if held >= len(x_train):
        raise ValueError(f"--validation-split {split} leaves no training images")
    x_val, y_val = x_train[len(x_train) - held:], y_train[len(x_train) - held:]
    x_train, y_train = x_train[:len(x_train) - held], y_train[:len(y_train) - held]
    world = ranks(args, args.batch_size)
    model = CNN(CNNConfig(dropout=args.dropout))
    world.reseed(args.seed)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    sampler = world.sampler(len(x_train), args.seed) if world.distributed else None
    print(f"{NAME}: conv 32 3x3 -> pool 2 -> conv 64 3x3 -> pool 2 -> dense 128 -> 10, "
          f"{model.num_parameters():,} parameters, Adam lr {args.lr}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {len(x_train):,} images, {helpers.thread_banner()}"
          f"{world.banner()}, "
          f"kernels {'on' if helpers.kernels_enabled() else 'off (NumPy reference)'}", flush=True)

    def report(epoch: int, logs: dict[str, float]) -> None:
        val = (f" - val loss {logs['val_loss']:.4f} - val accuracy {logs['val_accuracy']:.4f}"
               if held else "")
        print(f"epoch {epoch + 1}/{args.epochs} - {logs['seconds']:.1f}s - loss "
              f"{logs['loss']:.4f} - accuracy {logs['accuracy']:.4f}{val} - test accuracy "
              f"{logs['test_accuracy']:.4f} - {logs['samples_per_second']:,.0f} samples/s",
              flush=True)

    def evaluate_all(m: nn.Module) -> dict[str, float]:
        logs = evaluate(m, x_test, y_test)
        if held:
            logs.update({k.replace("test_", "val_"): v
                         for k, v in evaluate(m, x_val, y_val).items()})
        return logs

    stop = reporting.early_stopping(args)

    started = time.perf_counter()
    history = train.fit(model, lambda epoch: shuffled_batches(x_train, y_train, world.batch,
                                                              sampler, epoch),
                        loss_fn, opt, epochs=args.epochs, batch_metrics=correct_predictions,
                        evaluate=evaluate_all,
                        callbacks=[train.LambdaCallback(on_epoch_end=report),
                                   *([stop] if stop else [])],
                        distributed=world.distributed, resume=resume, device=args.device,
                        checkpoint=train.Checkpointing(
                            args.save, every=args.save_every, unit="epochs",
                            meta={"recipe": NAME, "args": run_config(args)}))
    elapsed = time.perf_counter() - started
    rate = float(np.median(history.column("samples_per_second")))
    test_loss, test_accuracy = history.epochs[-1]["test_loss"], history.epochs[-1]["test_accuracy"]
    if stop is not None and stop.best_weights is not None \
            and stop.best_epoch != len(history.epochs) - 1:  # earlier weights: measure them
        model.eval()
        with no_grad():
            final = evaluate(model, x_test, y_test)
        test_loss, test_accuracy = final["test_loss"], final["test_accuracy"]
    print(f"test loss {test_loss:.4f} - test accuracy {test_accuracy:.4f} - {elapsed:.0f}s in "
          f"all - median training {rate:,.0f} samples/s")
    if args.save and world.rank == 0:
        print(f"checkpoint written to {args.save}")
    reporting.write_curves(history, args, world.rank)
    out = {"test_loss": test_loss, "test_accuracy": test_accuracy, "samples_per_second": rate}
    if getattr(args, "report", False):
        out.update(reporting.report_classification(args, y_test, predict(model, x_test),
                                                   world.rank))
    return out


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's logits for x (N, 10), in eval mode without a graph."""
    device = model.parameters()[0].device
    model.eval()
    with no_grad():
        return np.concatenate([model(tl.Tensor(x[i:i + batch_size], device=device)).numpy()
                               for i in range(0, len(x), batch_size)] or [np.zeros((0, 10))])
