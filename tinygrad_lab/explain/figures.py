"""Pictures of attributions and attention (matplotlib, the `plot` extra; tl.plot draws them)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tinygrad_lab import plot


def _image(a: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) as (H, W): channels summed (one grey or heat map per picture)."""
    return a.sum(axis=0) if a.ndim == 3 else a


def attribution_figure(image: np.ndarray, maps: Mapping[str, np.ndarray],
                       path: str | os.PathLike[str], title: str = "") -> Path:
    """The image, then each attribution map beside it. Signed maps use a diverging scale
    centred on 0 (red: raises the score, blue: lowers it); non-negative ones (saliency
    magnitude, occlusion drops that are all >= 0) a sequential one."""
    fig, axes = plot.figure(1, 1 + len(maps), panel_size=(3.0, 3.2), what="explanation pictures")
    axes[0].imshow(_image(image), cmap="gray")
    axes[0].set_title("input")
    for ax, (name, m) in zip(axes[1:], maps.items()):
        m = _image(np.asarray(m, dtype=np.float64))
        if m.min() < 0:
            bound = float(np.abs(m).max()) or 1.0
            shown = ax.imshow(m, cmap="RdBu_r", vmin=-bound, vmax=bound)
        else:
            shown = ax.imshow(m, cmap="inferno")
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return plot.save(fig, path)


def attention_figure(maps: Sequence[np.ndarray], tokens: Sequence[str],
                     path: str | os.PathLike[str], title: str = "") -> Path:
    """One panel per (layer, head): rows are layers, columns heads; each panel is a (T, T) map
    of sample 0, query positions down, key positions across, labelled with the tokens."""
    if not maps:
        raise ValueError("attention_figure: no attention maps")
    layers, heads = len(maps), maps[0].shape[1]
    side = max(2.2, 0.22 * len(tokens) + 1.0)
    fig, axes = plot.figure(layers, heads, panel_size=(side, side), what="attention pictures")
    labels = [repr(t)[1:-1] for t in tokens]  # newlines and spaces visible
    for layer, weights in enumerate(maps):
        for head in range(heads):
            ax = axes[layer * heads + head]
            ax.imshow(weights[0, head], cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
            ticks = range(len(labels))
            ax.set_xticks(ticks, labels, fontsize=6)
            ax.set_yticks(ticks, labels, fontsize=6)
    if title:
        fig.suptitle(title)
    return plot.save(fig, path)
