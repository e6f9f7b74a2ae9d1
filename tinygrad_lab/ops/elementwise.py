"""Elementwise ops. Binary ops broadcast; Function.apply's caller undoes it in backward.

Activations call named array functions (`relu_forward`, ...) so a fused kernel can replace the
reference body; the references below are the definition of the maths.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.function import Ctx, Function


class Add(Function):
    """z = a + b;  dz/da = 1, dz/db = 1."""

    def forward(self, ctx: Ctx, a: Array, b: Array) -> Array:
        return a + b

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array, Array]:
        return g, g


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""

    def forward(self, ctx: Ctx, a: Array, b: Array) -> Array:
        return a - b

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array, Array | None]:
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """z = a * b;  dz/da = b, dz/db = a."""

    def forward(self, ctx: Ctx, a: Array, b: Array) -> Array:
        ctx.save(a, b)
        return a * b

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array | None, Array | None]:
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)


class Div(Function):
    """z = a / b;  dz/da = 1/b, dz/db = -a/b**2 = -z/b."""

    def forward(self, ctx: Ctx, a: Array, b: Array) -> Array:
        z = a / b
        ctx.save(b, z)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array | None, Array | None]:
        b, z = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = g / b if need_a else None
        return ga, (-(ga if ga is not None else g / b) * z if need_b else None)


class Neg(Function):
    """z = -a."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        return -a

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        return (-g,)


class PowScalar(Function):
    """z = a ** p for a constant p;  dz/da = p * a**(p-1)."""

    exponent: float

    def forward(self, ctx: Ctx, a: Array) -> Array:
        ctx.save(a)
        if self.exponent == 2:
            return a * a
        return a**self.exponent

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (a,) = ctx.saved
        p = self.exponent
        if p == 0:  # d(a**0)/da = 0 everywhere; p * a**-1 would give nan at a = 0
            return (ctx.xp.zeros_like(a),)
        if p == 2:
            return (g * 2 * a,)
        return (g * p * a ** (p - 1),)


class Pow(Function):
    """z = a ** b;  dz/da = b * a**(b-1),  dz/db = z * log(a) (a > 0 where b needs a gradient)."""

    def forward(self, ctx: Ctx, a: Array, b: Array) -> Array:
        z = a**b
        ctx.save(a, b, z)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array | None, Array | None]:
        a, b, z = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = g * b * a ** (b - 1) if need_a else None
        gb = g * z * ctx.xp.log(a) if need_b else None
        return ga, gb


class Exp(Function):
    """z = exp(a);  dz/da = z."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        z = ctx.xp.exp(a)
        ctx.save(z)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (z,) = ctx.saved
        return (g * z,)


class Log(Function):
    """z = log(a);  dz/da = 1/a."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        ctx.save(a)
        return ctx.xp.log(a)

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (a,) = ctx.saved
        return (g / a,)


class Sqrt(Function):
    """z = sqrt(a);  dz/da = 1 / (2 z)."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        z = ctx.xp.sqrt(a)
        ctx.save(z)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (z,) = ctx.saved
        return (g / (2 * z),)


class Abs(Function):
    """z = |a|;  dz/da = sign(a) (0 at 0, as NumPy's sign)."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        ctx.save(a)
        return ctx.xp.abs(a)

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (a,) = ctx.saved
        return (g * ctx.xp.sign(a),)


class Clip(Function):
    """z = min(max(a, low), high);  dz/da = 1 inside [low, high], 0 outside."""

    low: float | None
    high: float | None

    def forward(self, ctx: Ctx, a: Array) -> Array:
        ctx.save(a)
        return ctx.xp.clip(a, self.low, self.high)

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (a,) = ctx.saved
        inside = ctx.xp.ones(a.shape, dtype=bool)
        if self.low is not None:
            inside &= a >= self.low
        if self.high is not None:
            inside &= a <= self.high
        return (g * inside,)


class Maximum(Function):
    """z = max(a, b);  the gradient goes to the larger input, split evenly on ties."""

    def forward(self, ctx: Ctx, a: Array, b: Array) -> Array:
        z = ctx.xp.maximum(a, b)
        ctx.save(a, b)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array, Array]:
        a, b = ctx.saved
        share_a = (a > b) + 0.5 * (a == b)
        return g * share_a, g * (1.0 - share_a)


class Where(Function):
    """z = cond ? a : b;  no gradient to cond."""

    def forward(self, ctx: Ctx, cond: Array, a: Array, b: Array) -> Array:
        ctx.save(cond)
        return ctx.xp.where(cond, a, b)

    def backward(self, ctx: Ctx, g: Array) -> tuple[None, Array, Array]:
        (cond,) = ctx.saved
        zero = ctx.xp.zeros((), dtype=g.dtype)
        return None, ctx.xp.where(cond, g, zero), ctx.xp.where(cond, zero, g)


class Cast(Function):
    """z = a.astype(dtype); the gradient is cast back in backward (by Tensor.backward)."""

    dtype: Any

    def forward(self, ctx: Ctx, a: Array) -> Array:
        return a.astype(self.dtype)

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        return (g,)


# --- activations: named array functions, so kernels can take over ------------------------------
class Relu(Function):
    """z = max(a, 0);  dz/da = 1 where z > 0 (0 at the kink)."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        z = ctx.call("relu_forward", a)
        ctx.save(z)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (z,) = ctx.saved
        return (ctx.call("relu_backward", g, z),)


class Tanh(Function):
    """z = tanh(a);  dz/da = 1 - z**2, so only the output is saved."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        z = ctx.call("tanh_forward", a)
        ctx.save(z)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (z,) = ctx.saved
        return (ctx.call("tanh_backward", g, z),)


class Sigmoid(Function):
    """z = 1 / (1 + exp(-a));  dz/da = z (1 - z)."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        z = ctx.call("sigmoid_forward", a)
        ctx.save(z)
        return z

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (z,) = ctx.saved
        return (ctx.call("sigmoid_backward", g, z),)


class Gelu(Function):
    """z = 0.5 a (1 + tanh(k (a + 0.044715 a**3))), k = sqrt(2/pi): the tanh approximation."""

    def forward(self, ctx: Ctx, a: Array) -> Array:
        ctx.save(a)
        return ctx.call("gelu_forward", a)

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array]:
        (a,) = ctx.saved
        return (ctx.call("gelu_backward", g, a),)


GELU_K = float(np.sqrt(2.0 / np.pi))


@reference_function("relu_forward")
def relu_forward(x: Array) -> Array:
    return array_module(x).maximum(x, 0)


@reference_function("relu_backward")
def relu_backward(g: Array, y: Array) -> Array:
    return g * (y > 0)


@reference_function("tanh_forward")
def tanh_forward(x: Array) -> Array:
    return array_module(x).tanh(x)


@reference_function("tanh_backward")
def tanh_backward(g: Array, y: Array) -> Array:
    return g * (1 - y * y)


@reference_function("sigmoid_forward")
def sigmoid_forward(x: Array) -> Array:
    xp = array_module(x)
    # exp of a non-positive number only: no overflow warnings for large |x|
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@reference_function("sigmoid_backward")
def sigmoid_backward(g: Array, y: Array) -> Array:
    return g * y * (1 - y)


@reference_function("gelu_forward")
def gelu_forward(x: Array) -> Array:
    xp = array_module(x)
    return (0.5 * x * (1 + xp.tanh(GELU_K * (x + 0.044715 * x**3)))).astype(x.dtype, copy=False)


@reference_function("gelu_backward")
def gelu_backward(g: Array, x: Array) -> Array:
    xp = array_module(x)
    t = xp.tanh(GELU_K * (x + 0.044715 * x**3))
    dt = (1 - t * t) * GELU_K * (1 + 3 * 0.044715 * x * x)
    return (g * (0.5 * (1 + t) + 0.5 * x * dt)).astype(g.dtype, copy=False)
