"""Keras' optimizers as specs: the model binds one to its parameters once it is built (Keras
builds after compile). Keras' names and defaults (epsilon 1e-7), tinygrad_lab.optim underneath."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tinygrad_lab import optim as _optim


@dataclass
class OptimizerSpec:
    """An optimizer waiting for parameters; `name` and `config` (Keras' arguments) save it."""

    factory: Callable[..., _optim.Optimizer]
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def bind(self, params: list[Any]) -> _optim.Optimizer:
        return self.factory(params, **self.kwargs)

    def get_config(self) -> dict[str, Any]:
        return {"class_name": self.name, "config": dict(self.config)}


def Adam(learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
         epsilon: float = 1e-7) -> OptimizerSpec:
    """Keras' Adam defaults (epsilon 1e-7)."""
    return OptimizerSpec(_optim.Adam, {"lr": learning_rate, "betas": (beta_1, beta_2),
                                       "eps": epsilon}, "Adam",
                         {"learning_rate": learning_rate, "beta_1": beta_1, "beta_2": beta_2,
                          "epsilon": epsilon})


def AdamW(learning_rate: float = 1e-3, weight_decay: float = 0.004, beta_1: float = 0.9,
          beta_2: float = 0.999, epsilon: float = 1e-7) -> OptimizerSpec:
    return OptimizerSpec(_optim.AdamW, {"lr": learning_rate, "betas": (beta_1, beta_2),
                                        "eps": epsilon, "weight_decay": weight_decay}, "AdamW",
                         {"learning_rate": learning_rate, "weight_decay": weight_decay,
                          "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon})


def SGD(learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False
        ) -> OptimizerSpec:
    return OptimizerSpec(_optim.SGD, {"lr": learning_rate, "momentum": momentum,
                                      "nesterov": nesterov}, "SGD",
                         {"learning_rate": learning_rate, "momentum": momentum,
                          "nesterov": nesterov})


def RMSprop(learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7) -> OptimizerSpec:
    return OptimizerSpec(_optim.RMSprop, {"lr": learning_rate, "alpha": rho, "eps": epsilon},
                         "RMSprop", {"learning_rate": learning_rate, "rho": rho,
                                     "epsilon": epsilon})


def Adagrad(learning_rate: float = 1e-3, epsilon: float = 1e-7) -> OptimizerSpec:
    """Keras' Adagrad: lr 1e-3, epsilon 1e-7 (Keras also starts the accumulator at 0.1, this one
    at 0 like PyTorch)."""
    return OptimizerSpec(_optim.Adagrad, {"lr": learning_rate, "eps": epsilon}, "Adagrad",
                         {"learning_rate": learning_rate, "epsilon": epsilon})


_CLASSES: dict[str, Callable[..., OptimizerSpec]] = {
    "Adam": Adam, "AdamW": AdamW, "SGD": SGD, "RMSprop": RMSprop, "Adagrad": Adagrad}
NAMES: dict[str, Callable[..., OptimizerSpec]] = {k.lower(): v for k, v in _CLASSES.items()}


def get(identifier: Any) -> OptimizerSpec | _optim.Optimizer:
    """A name ('adam', 'adamw', 'sgd', 'rmsprop', 'adagrad'), a spec, a bound Optimizer, or a
    config dict {"class_name", "config"} as `OptimizerSpec.get_config` writes."""
    if isinstance(identifier, (OptimizerSpec, _optim.Optimizer)):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in NAMES:
            raise ValueError(f"unknown optimizer {identifier!r}; choose from {sorted(NAMES)}")
        return NAMES[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    raise TypeError(f"optimizer must be a name, a keras optimizer or an Optimizer, got "
                    f"{identifier!r}")


__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "OptimizerSpec", "RMSprop", "get"]
