"""Weight penalties added to the training loss (Keras' `keras.regularizers`): l1 * sum(|w|) and
l2 * sum(w ** 2), the latter without Keras' nor PyTorch's factor 1/2 (Keras 3 has none)."""

from __future__ import annotations

from typing import Any

from tinygrad_lab.tensor import Tensor


class Regularizer:
    """A penalty of one weight tensor; `get_config` and `from_config` round-trip it as JSON."""

    def __call__(self, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regularizer:
        return cls(**config)


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w ** 2)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        for name, value in (("l1", l1), ("l2", l2)):
            if not float(value) >= 0:  # also rejects nan
                raise ValueError(f"regularizer: {name} must be >= 0, got {value}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, weight: Tensor) -> Tensor:
        total = weight.abs().sum() * self.l1 if self.l1 else None
        if self.l2:
            sq = weight.square().sum() * self.l2
            total = sq if total is None else total + sq
        return total if total is not None else weight.sum() * 0.0

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self) -> str:
        return f"L1L2(l1={self.l1:g}, l2={self.l2:g})"


class L1(L1L2):
    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l2=l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


def l1(l1: float = 0.01) -> L1:  # noqa: D103 - Keras' lower-case alias
    return L1(l1)


def l2(l2: float = 0.01) -> L2:  # noqa: D103
    return L2(l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:  # noqa: D103
    return L1L2(l1, l2)


_CLASSES: dict[str, type[Regularizer]] = {"L1L2": L1L2, "L1": L1, "L2": L2}


def get(identifier: Any) -> Regularizer | None:
    """None, a Regularizer, a name ('l1', 'l2', 'l1_l2': Keras' default strengths) or a config
    dict {"class_name": ..., "config": {...}} as `serialize` writes."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        names = {"l1": l1, "l2": l2, "l1_l2": l1_l2}
        if identifier not in names:
            raise ValueError(f"unknown regularizer {identifier!r}; choose from {sorted(names)}")
        return names[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]].from_config(dict(identifier.get("config", {})))
    raise TypeError(f"regularizer must be None, a name or a Regularizer, got {identifier!r}")


def serialize(regularizer: Regularizer | None) -> dict[str, Any] | None:
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


__all__ = ["L1", "L1L2", "L2", "Regularizer", "get", "l1", "l1_l2", "l2", "serialize"]
