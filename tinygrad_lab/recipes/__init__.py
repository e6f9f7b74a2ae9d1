"""Training targets for `tinygrad-lab train NAME`: each a module with add_arguments() and run()."""

from __future__ import annotations

import importlib
from types import ModuleType

RECIPES: dict[str, str] = {
    "mnist-mlp": "mnist_mlp",
    "mnist-cnn": "mnist_cnn",
    "shakespeare-gpt": "shakespeare_gpt",
    "shakespeare-lstm": "shakespeare_lstm",
}


def get(name: str) -> ModuleType:
    if name not in RECIPES:
        raise KeyError(name)
    return importlib.import_module(f"tinygrad_lab.recipes.{RECIPES[name]}")
