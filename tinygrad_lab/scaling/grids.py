"""The sizes a scaling sweep runs: per family a base size and axes that vary one knob each.

A family's grid is its base size plus, for each axis, every value other than the base's; so an
axis's curve is its own rows plus the base row. Model-size axes (MLP width and depth, CNN
channels, Transformer d_model and layers) change the parameter count at a fixed batch; the
`batch` and `context` axes change the work per step at (nearly) fixed parameters.

    for size in grid("gpt", quick=False): size.key, size.config, size.batch
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("mlp", "cnn", "gpt")
MODEL_AXES = ("width", "depth", "channels", "d_model", "layers")
"""Axes along which the parameter count grows at a fixed batch and context."""


@dataclass(frozen=True)
class Size:
    """One point of a sweep: the model config (a `<Family>Config`'s keyword arguments), the
    batch and, for the Transformer, the context (tokens per sample)."""

    family: str
    axis: str  # "base" or the knob this row varies
    value: int  # the knob's value (the base row: its first axis's value)
    config: dict[str, Any] = field(hash=False)
    batch: int
    context: int = 1  # tokens per sample; 1 for image/vector models

    @property
    def key(self) -> str:
        return f"{self.family}/{self.axis}={self.value}"

    @property
    def items_per_step(self) -> int:
        """Samples per step (tokens for the Transformer)."""
        return self.batch * self.context

    def config_json(self) -> str:
        return json.dumps(self.config, sort_keys=True)


@dataclass(frozen=True)
class FamilyGrid:
    """A base config plus the values of each axis; `build(axis, value)` returns the config and
    batch/context of one point."""

    family: str
    base: dict[str, Any]
    batch: int
    context: int
    axes: dict[str, tuple[int, ...]]

    def base_value(self, axis: str) -> int:
        return _axis_value(axis, self.base, self.batch, self.context)

    def sizes(self) -> list[Size]:
        first = next(iter(self.axes))
        out = [Size(self.family, "base", self.base_value(first), dict(self.base), self.batch,
                    self.context)]
        for axis, values in self.axes.items():
            for value in values:
                if value != self.base_value(axis):
                    config, batch, context = _with_axis(self.family, axis, value, self.base,
                                                       self.batch, self.context)
                    out.append(Size(self.family, axis, value, config, batch, context))
        return out


def _axis_value(axis: str, base: dict[str, Any], batch: int, context: int) -> int:
    if axis == "batch":
        return batch
    if axis == "context":
        return context
    if axis == "width":
        return int(base["hidden"][0])
    if axis == "depth":
        return len(base["hidden"])
    if axis == "channels":
        return int(base["channels"][0])
    if axis == "layers":
        return int(base["num_layers"])
    return int(base[axis])


def _with_axis(family: str, axis: str, value: int, base: dict[str, Any], batch: int,
               context: int) -> tuple[dict[str, Any], int, int]:
    """The base config with one knob set; the knobs that follow it (heads, MLP width, the
    second conv stage, the block size) scale with it."""
    config = dict(base)
    if axis == "batch":
        return config, value, context
    if axis == "context":
        config["block_size"] = value
        return config, batch, value
    if axis == "width":
        config["hidden"] = [value] * len(base["hidden"])
    elif axis == "depth":
        config["hidden"] = [base["hidden"][0]] * value
    elif axis == "channels":
        config["channels"] = [value * 2**i for i in range(len(base["channels"]))]
    elif axis == "layers":
        config["num_layers"] = value
    elif axis == "d_model":
        config.update(d_model=value, num_heads=max(1, value // 32), d_ff=4 * value)
    else:
        raise ValueError(f"{family}: unknown axis {axis!r}")
    return config, batch, context


_MLP = {"inputs": 784, "hidden": [512], "classes": 10}
_CNN = {"in_channels": 1, "image": 28, "channels": [32, 64], "hidden": 128, "classes": 10,
        "dropout": 0.0}
_GPT = {"vocab_size": 65, "block_size": 64, "d_model": 128, "num_heads": 4, "num_layers": 4,
        "d_ff": 512, "dropout": 0.0}

GRIDS: dict[str, FamilyGrid] = {
    "mlp": FamilyGrid("mlp", _MLP, batch=128, context=1, axes={
        "width": (64, 128, 256, 512, 1024, 2048, 4096), "depth": (1, 2, 4, 8),
        "batch": (32, 128, 512)}),
    "cnn": FamilyGrid("cnn", _CNN, batch=64, context=1, axes={
        "channels": (8, 16, 32, 64), "batch": (16, 64, 256)}),
    "gpt": FamilyGrid("gpt", _GPT, batch=16, context=64, axes={
        "d_model": (32, 64, 128, 256), "layers": (1, 2, 4, 8), "context": (16, 64, 256),
        "batch": (4, 16, 64)}),
}
"""The default sweep: 32 sizes, the reference workloads of bench_train.py as base sizes."""

QUICK_GRIDS: dict[str, FamilyGrid] = {
    "mlp": FamilyGrid("mlp", {**_MLP, "hidden": [128]}, batch=64, context=1,
                      axes={"width": (32, 128, 512)}),
    "cnn": FamilyGrid("cnn", {**_CNN, "channels": [8, 16], "hidden": 32}, batch=16, context=1,
                      axes={"channels": (4, 8, 16)}),
    "gpt": FamilyGrid("gpt", {**_GPT, "block_size": 32, "d_model": 64, "num_heads": 2,
                              "num_layers": 1, "d_ff": 256}, batch=8, context=32,
                      axes={"d_model": (32, 64, 128)}),
}
"""`--quick`: three small sizes per family, for tests and a first look."""


def grid(family: str, quick: bool = False) -> list[Size]:
    """Every size of one family's sweep, base first."""
    table = QUICK_GRIDS if quick else GRIDS
    if family not in table:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    return table[family].sizes()


__all__ = ["FAMILIES", "GRIDS", "MODEL_AXES", "QUICK_GRIDS", "FamilyGrid", "Size", "grid"]
