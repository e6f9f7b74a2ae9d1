"""tinygrad_lab: a from-scratch deep-learning engine (autograd, layers, optimizers, kernels)."""

from tinygrad_lab import helpers

helpers.apply_thread_env()
helpers.setup_numba_cache()  # before any kernel module: Numba picks its cache dir at decoration

from tinygrad_lab import ceilings, datasets, flops, memory, nn, optim  # noqa: E402
from tinygrad_lab.function import (  # noqa: E402
    enable_grad,
    is_grad_enabled,
    no_grad,
    profile,
)
from tinygrad_lab.helpers import reference, set_num_threads, use_kernels  # noqa: E402
from tinygrad_lab.profiling import (  # noqa: E402
    StepTiming,
    export_chrome_trace,
    profile_summary,
    step_timing,
    summarize,
)
from tinygrad_lab.random import manual_seed  # noqa: E402
from tinygrad_lab.serialization import load, save  # noqa: E402
from tinygrad_lab.tensor import Tensor, cat, concatenate, from_numpy, stack, where  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "StepTiming",
    "Tensor",
    "cat",
    "ceilings",
    "concatenate",
    "datasets",
    "enable_grad",
    "export_chrome_trace",
    "flops",
    "from_numpy",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "memory",
    "nn",
    "no_grad",
    "optim",
    "profile",
    "profile_summary",
    "reference",
    "save",
    "set_num_threads",
    "summarize",
    "stack",
    "step_timing",
    "use_kernels",
    "where",
]
