"""Public testing kit: numerical gradient checks and hypothesis strategies for ops.

The project's own tests use it; so can anyone adding an op:

    >>> from tinygrad_lab.testing import gradcheck, strategies as tst
    >>> gradcheck(lambda x: x.tanh(), np.random.randn(3, 4))
    True

`strategies` needs hypothesis (the `dev` extra); `gradcheck` needs only NumPy. `standin` is a
test-only non-CPU device holding NumPy arrays (`standin.register()`), and `devices` lists the
devices and code paths a suite runs over (`DEVICE_CASES`, what the project's `device` fixture
yields).
"""

from tinygrad_lab.testing.gradcheck import (
    ForwardCheckError,
    GradcheckError,
    check_forward,
    gradcheck,
)

__all__ = ["ForwardCheckError", "GradcheckError", "check_forward", "gradcheck", "strategies"]


def __getattr__(name: str) -> object:
    # strategies imports hypothesis, which users of gradcheck alone may not have installed
    if name == "strategies":
        import importlib

        return importlib.import_module("tinygrad_lab.testing.strategies")
    raise AttributeError(f"module 'tinygrad_lab.testing' has no attribute {name!r}")
