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
