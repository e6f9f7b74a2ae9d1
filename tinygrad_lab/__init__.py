"""tinygrad_lab: a from-scratch deep-learning engine (autograd, layers, optimizers, kernels)."""

from tinygrad_lab import helpers
from tinygrad_lab._source_tree import mount_kernels

mount_kernels()  # a checkout run without its install finds kernels/ all the same
helpers.apply_thread_env()
helpers.setup_numba_cache()  # before any kernel module: Numba picks its cache dir at decoration

from tinygrad_lab import ceilings, datasets, explain, flops, memory, nn, optim, viz  # noqa: E402
from tinygrad_lab.creation import *  # noqa: E402, F403  (tl.zeros, tl.arange, tl.rand, ...)
from tinygrad_lab.function import (  # noqa: E402
    enable_grad,
    is_grad_enabled,
    no_grad,
    profile,
)
from tinygrad_lab.functions import *  # noqa: E402, F403  (tl.gather, tl.einsum, tl.sort, ...)
from tinygrad_lab.helpers import reference, set_num_threads, use_kernels  # noqa: E402
from tinygrad_lab.pointwise import *  # noqa: E402, F403  (tl.sin, tl.atan2, tl.div, ...)
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
    "explain",
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
    "viz",
    "where",
]
__all__ += creation.__all__ + pointwise.__all__  # noqa: F405  (tinygrad_lab/creation.py, pointwise.py)
__all__ += functions.__all__  # noqa: F405  (tinygrad_lab/functions.py)
