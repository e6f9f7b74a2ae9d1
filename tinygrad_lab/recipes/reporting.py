"""What every recipe adds around its training: --patience / --early-stopping-metric (an
EarlyStopping that restores the best weights), --plot (training curves), --report (per-class
precision, recall, F1 and the confusion matrix of the test set) and the progress display (a
tqdm bar with ETA, loss and throughput when stderr is a terminal, plain lines otherwise)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_lab import train


def add_arguments(parser: argparse.ArgumentParser, classification: bool = False) -> None:
    """--patience, --early-stopping-metric, --plot (and --report for classifiers)."""
    parser.add_argument("--patience", type=int, default=None, metavar="N",
                        help="stop after N epochs (evaluations for step-based recipes) "
                        "without improvement of --early-stopping-metric, then restore the "
                        "best weights (default: no early stopping)")
    parser.add_argument("--early-stopping-metric", default="val_loss", metavar="NAME",
                        help="the logged quantity --patience watches (default val_loss; "
                        "e.g. val_accuracy, which is maximised)")
    parser.add_argument("--plot", metavar="PATH", help="write the training curves (loss and "
                        "metrics, training against validation) to this PNG"
                        + (" and, with --report, the confusion matrix beside it" if
                           classification else ""))
    if classification:
        parser.add_argument("--report", action="store_true", help="after training, print "
                            "precision, recall and F1 per class and the confusion matrix of "
                            "the test set")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad values before any data loads; check that --plot can be written."""
    if args.patience is not None and args.patience < 0:
        raise ValueError(f"--patience must be >= 0, got {args.patience}")
    early_stopping(args)  # a metric whose direction cannot be told fails here
    if args.plot:
        from tinygrad_lab.plot import figure
        from tinygrad_lab.serialization import check_writable

        check_writable(args.plot)
        figure(what="--plot pictures")  # MissingMatplotlib (an ImportError) now, not after training


def early_stopping(args: argparse.Namespace, per: str = "epoch") -> Any:
    """The EarlyStopping --patience asks for (restoring the best weights), or None."""
    if args.patience is None:
        return None
    from tinygrad_lab.callbacks import EarlyStopping

    return EarlyStopping(monitor=args.early_stopping_metric, patience=args.patience,
                         restore_best_weights=True, per=per, verbose=1)


def confusion_path(plot_path: str | Path) -> Path:
    """Where the confusion matrix goes beside the curves: curves.png -> curves-confusion.png."""
    path = Path(plot_path)
    return path.with_name(f"{path.stem}-confusion{path.suffix or '.png'}")


def write_curves(history: Any, args: argparse.Namespace, rank: int = 0) -> None:
    if args.plot and rank == 0:
        from tinygrad_lab.plot import training_curves

        print(f"training curves written to {training_curves(history, args.plot)}")


def report_classification(args: argparse.Namespace, y_true: np.ndarray, scores: np.ndarray,
                          rank: int = 0) -> dict[str, float]:
    """--report: the test set's per-class table and confusion matrix (and its picture with
    --plot); returns the macro averages."""
    from tinygrad_lab import metrics

    if not getattr(args, "report", False) or rank != 0:
        return {}
    print(metrics.classification_report(y_true, scores))
    if args.plot:
        from tinygrad_lab.plot import plot_confusion_matrix

        matrix = metrics.confusion_matrix(y_true, scores, labels=range(scores.shape[-1]))
        path = plot_confusion_matrix(matrix, list(range(scores.shape[-1])),
                                     confusion_path(args.plot),
                                     title="confusion matrix (test set)")
        print(f"confusion matrix written to {path}")
    return {f"test_{name}_macro": float(getattr(metrics, name)(y_true, scores, average="macro",
                                                               zero_division=0))
            for name in ("precision", "recall", "f1")}


class Progress(train.Callback):
    """A tqdm bar over the run's steps (ETA, running loss, throughput in `unit`/s) when stderr
    is a terminal; otherwise nothing, and `say` prints plain lines. Rank 0 only."""

    def __init__(self, total_steps: int, items_per_step: int, unit: str,
                 enabled: bool | None = None) -> None:
        self.total, self.items, self.unit = total_steps, items_per_step, unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar: Any = None

    def on_train_begin(self, logs: dict[str, float]) -> None:
        if not self.enabled or self.loop.rank != 0:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=self.loop.step, unit="step",
                        dynamic_ncols=True, file=sys.stderr, leave=True)

    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        rate = self.bar.format_dict.get("rate") or 0.0
        self.bar.set_postfix({"loss": f"{logs['batch_loss']:.4f}",
                              f"{self.unit}/s": f"{rate * self.items:,.0f}"}, refresh=False)

    def on_train_end(self, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def say(self, text: str) -> None:
        """A line of output that leaves the bar intact (tqdm.write) or a plain print."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, flush=True)
