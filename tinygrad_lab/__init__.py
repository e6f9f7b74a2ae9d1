"""tinygrad_lab: a from-scratch deep-learning engine (autograd, layers, optimizers, kernels)."""

from tinygrad_lab import helpers

helpers.apply_thread_env()

from tinygrad_lab import datasets, nn, optim  # noqa: E402
from tinygrad_lab.function import (  # noqa: E402
    enable_grad,
    is_grad_enabled,
    no_grad,
    profile,
    summarize,
)
from tinygrad_lab.helpers import reference, set_num_threads, use_kernels  # noqa: E402
from tinygrad_lab.random import manual_seed  # noqa: E402
from tinygrad_lab.serialization import load, save  # noqa: E402
from tinygrad_lab.tensor import Tensor, cat, concatenate, stack, where  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "cat",
    "concatenate",
    "datasets",
    "enable_grad",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "nn",
    "no_grad",
    "optim",
    "profile",
    "reference",
    "save",
    "set_num_threads",
    "summarize",
    "stack",
    "use_kernels",
    "where",
]
