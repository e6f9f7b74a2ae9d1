"""Pictures (matplotlib, the optional `plot` extra, imported only when a picture is drawn).

Everything else in the package works without matplotlib; a plot asked for without it raises
MissingMatplotlib naming the extra. Figures are built with `matplotlib.figure.Figure`, never
pyplot, so drawing needs no display and leaves no global state behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class MissingMatplotlib(ImportError):
    """matplotlib is not installed: pictures need the `plot` extra."""


def figure(rows: int = 1, cols: int = 1, panel_size: tuple[float, float] = (4.2, 3.4),
           what: str = "plots") -> tuple[Any, list[Any]]:
    """A constrained-layout Figure with rows x cols axes (a flat list, row by row)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingMatplotlib(f"{what} need matplotlib: pip install 'tinygrad_lab[plot]'"
                                ) from None
    fig = Figure(figsize=(panel_size[0] * cols, panel_size[1] * rows), dpi=90,
                 layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]


def save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write `fig` to `path` atomically (a temporary file renamed into place): a failed draw
    never leaves a half-written picture where the last good one was. The format follows the
    suffix (.png, .svg, .pdf)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- training pictures ----------------------------------------------------------------------------
_NOT_CURVES = {"seconds", "samples_per_second", "size", "batch_loss", "epoch", "step",
               "learning_rate", "lr"}
_PREFIXES = ("val_", "test_")


def _columns(history: Any) -> tuple[str, list[float], dict[str, list[float]]]:
    """(x label, x values, {key: values}) from a train.History (per epoch; per evaluation step
    when it ran one epoch and evaluated several times), a Keras History (`.history`), a dict
    of equal-length lists (an optional "step" or "epoch" list is the x axis) or a list of
    per-epoch dicts."""
    if hasattr(history, "epochs") and hasattr(history, "evaluations"):  # train.History
        if len(history.epochs) <= 1 and len(history.evaluations) > 1:
            rows, x_label = history.evaluations, "step"
            xs = [float(r["step"]) for r in rows]
            return x_label, xs, _gather(rows)
        rows = history.epochs
        return "epoch", [float(i + 1) for i in range(len(rows))], _gather(rows)
    if hasattr(history, "history") and isinstance(history.history, dict):  # Keras' History
        columns = {k: list(v) for k, v in history.history.items()}
        epochs = getattr(history, "epoch", None) or range(len(next(iter(columns.values()), [])))
        return "epoch", [float(e + 1) for e in epochs], columns
    if isinstance(history, dict):
        columns = {k: list(v) for k, v in history.items()}
        for axis in ("step", "epoch"):
            if axis in columns:
                xs = [float(v) for v in columns.pop(axis)]
                return axis, xs, columns
        n = len(next(iter(columns.values()), []))
        return "epoch", [float(i + 1) for i in range(n)], columns
    if isinstance(history, (list, tuple)):
        return "epoch", [float(i + 1) for i in range(len(history))], _gather(list(history))
    raise TypeError(f"training_curves: expected a History, a dict of lists or a list of logs, "
                    f"got {type(history).__name__}")


def _gather(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return {k: [float(r[k]) if k in r else float("nan") for r in rows] for k in keys}


def training_curves(history: Any, path: str | os.PathLike[str],
                    keys: Any = None) -> Path:
    """Loss and metric curves to `path` (.png, .svg, .pdf): one panel per quantity (loss first),
    training, validation (`val_`) and test (`test_`) values together. `keys`: the base names
    to draw (default every numeric one but timings and the learning rate)."""
    x_label, xs, columns = _columns(history)
    numeric = {k: v for k, v in columns.items()
               if k not in _NOT_CURVES and v and all(isinstance(x, (int, float)) for x in v)}
    bases: list[str] = []
    for key in numeric:
        base = next((key[len(p):] for p in _PREFIXES if key.startswith(p)), key)
        if base not in bases:
            bases.append(base)
    if keys is not None:
        unknown = [k for k in keys if k not in bases]
        if unknown:
            raise ValueError(f"training_curves: no values for {unknown}; there are {bases}")
        bases = list(keys)
    bases = sorted(bases, key=lambda b: b != "loss")  # stable: loss first, then as logged
    if not bases or not xs:
        raise ValueError("training_curves: the history holds no values to draw")
    fig, axes = figure(1, len(bases), what="training curves")
    from matplotlib.ticker import MaxNLocator
    for ax, base in zip(axes, bases):
        for prefix, label in (("", "training"), ("val_", "validation"), ("test_", "test")):
            values = numeric.get(prefix + base)
            if values is None:
                continue
            ax.plot(xs[:len(values)], values, marker="o" if len(xs) < 30 else None,
                    markersize=3, label=label)
        ax.set_title(base)
        ax.set_xlabel(x_label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path)


def confusion_matrix_figure(matrix: Any, labels: Any = None, title: str = "confusion matrix",
                            normalize: bool = False) -> Any:
    """A Figure of a confusion matrix (rows: true class, columns: predicted), each cell's count
    written in it; `normalize` divides each row by its total (recall on the diagonal)."""
    import numpy as np

    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"confusion_matrix_figure: expected a square matrix, got shape "
                         f"{m.shape}")
    names = [str(v) for v in (labels if labels is not None else range(len(m)))]
    if len(names) != len(m):
        raise ValueError(f"confusion_matrix_figure: {len(names)} labels for a {len(m)}-class "
                         "matrix")
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-12) if normalize else m
    side = max(3.5, 0.45 * len(m) + 1.5)
    fig, (ax,) = figure(1, 1, panel_size=(side + 0.8, side), what="confusion matrices")
    image = ax.imshow(shown, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(m)), names, rotation=45 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(len(m)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(m) <= 30:
        top = shown.max() if shown.size else 0
        for i in range(len(m)):
            for j in range(len(m)):
                text = f"{shown[i, j]:.2f}" if normalize else f"{m[i, j]:g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > top / 2 else "black")
    return fig


def plot_confusion_matrix(matrix: Any, labels: Any, path: str | os.PathLike[str],
                          title: str = "confusion matrix", normalize: bool = False) -> Path:
    """`confusion_matrix_figure` written to `path` atomically."""
    return save(confusion_matrix_figure(matrix, labels, title, normalize), path)
