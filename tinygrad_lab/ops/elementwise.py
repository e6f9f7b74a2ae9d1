"""Elementwise ops. Binary ops broadcast; Function.apply's caller undoes it in backward.

Activations call named array functions (`relu_forward`, ...) so a fused kernel can replace the
reference body; the references below are the definition of the maths.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function


class Add(Function):
    """z = a + b;  dz/da = 1, dz/db = 1."""

    flops_per_element = (1, (0, 0))  # backward passes g through

    def forward(self, a: Array, b: Array) -> Array:
        return a + b

    def backward(self, g: Array) -> tuple[Array, Array]:
        return g, g


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""

    flops_per_element = (1, (0, 1))

    def forward(self, a: Array, b: Array) -> Array:
        return a - b

    def backward(self, g: Array) -> tuple[Array, Array | None]:
        return g, (-g if self.needs_input_grad[1] else None)


class Mul(Function):
    """z = a * b;  dz/da = b, dz/db = a."""

    flops_per_element = (1, (1, 1))

    def forward(self, a: Array, b: Array) -> Array:
        need_a, need_b = self.needs_input_grad
        self.save(b if need_a else None, a if need_b else None)  # x * const keeps const only
        return a * b

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        b, a = self.saved
        return (g * b if b is not None else None), (g * a if a is not None else None)


class Div(Function):
    """z = a / b;  dz/da = 1/b, dz/db = -a/b**2 = -z/b."""

    def forward(self, a: Array, b: Array) -> Array:
        z = a / b
        self.save(b, z if self.needs_input_grad[1] else None)
        return z

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # g / b once, then for b: negate and multiply by z
        return numel(out_shape) * (1 + 2 * self.needs_input_grad[1])

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        b, z = self.saved
        g_over_b = g / b
        return (g_over_b if self.needs_input_grad[0] else None), (
            -g_over_b * z if z is not None else None)


class Neg(Function):
    """z = -a."""

    flops_per_element = (1, 1)

    def forward(self, a: Array) -> Array:
        return -a

    def backward(self, g: Array) -> tuple[Array]:
        return (-g,)


class PowScalar(Function):
    """z = a ** p for a constant p;  dz/da = p * a**(p-1)."""

    exponent: float

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # p = 0: zeros; p = 2: g * 2 * a; else g * p * a**(p-1) (p - 1 is a constant)
        p = self.exponent
        return numel(out_shape) * (0 if p == 0 else 2 if p == 2 else 3)

    def forward(self, a: Array) -> Array:
        self.save(a)
        if self.exponent == 2:
            return a * a
        return a**self.exponent

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        p = self.exponent
        if p == 0:  # d(a**0)/da = 0 everywhere; p * a**-1 would give nan at a = 0
            return (self.xp.zeros_like(a),)
        if p == 2:
            return (g * 2 * a,)
        return (g * p * a ** (p - 1),)


class Pow(Function):
    """z = a ** b;  dz/da = b * a**(b-1) (0 where b = 0),  dz/db = z * log(a) (0 where a = 0
    and b >= 0). The masks are PyTorch's: they keep 0 * inf = nan out of 0 ** b and a ** 0."""

    flops_per_element = (1, (4, 3))  # a: b - 1, pow, two products; b: log, two products

    def forward(self, a: Array, b: Array) -> Array:
        z = a**b
        need_a, need_b = self.needs_input_grad
        self.save(a, b if need_a else None, z if need_b else None)
        return z

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, b, z = self.saved
        xp = self.xp
        ga = gb = None
        if self.needs_input_grad[0]:
            with np.errstate(divide="ignore", invalid="ignore"):
                ga = xp.where(b == 0, 0, g * b * a ** (b - 1)).astype(g.dtype, copy=False)
        if z is not None:
            # at a = 0, z = 0 ** b is finite exactly where b >= 0: no need to keep b for this
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = xp.where((a == 0) & xp.isfinite(z), 0, g * z * xp.log(a)).astype(
                    g.dtype, copy=False)
        return ga, gb


class Exp(Function):
    """z = exp(a);  dz/da = z."""

    flops_per_element = (1, 1)

    def forward(self, a: Array) -> Array:
        z = self.xp.exp(a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (g * z,)


class Log(Function):
    """z = log(a);  dz/da = 1/a."""

    flops_per_element = (1, 1)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.log(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g / a,)


class Sqrt(Function):
    """z = sqrt(a);  dz/da = 1 / (2 z)."""

    flops_per_element = (1, 2)

    def forward(self, a: Array) -> Array:
        z = self.xp.sqrt(a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (g / (2 * z),)


class Abs(Function):
    """z = |a|;  dz/da = sign(a) (0 at 0, as NumPy's sign)."""

    flops_per_element = (1, 2)  # sign, product

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.abs(a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (g * self.xp.sign(a),)


class Clip(Function):
    """z = min(max(a, low), high);  dz/da = 1 inside [low, high], 0 outside."""

    low: float | None
    high: float | None

    def _bounds(self) -> int:
        return (self.low is not None) + (self.high is not None)

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape) * self._bounds()  # one max and/or one min

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # one compare per bound, an `and` when there are two, the product with g
        bounds = self._bounds()
        return numel(out_shape) * (bounds + (bounds == 2) + 1)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.xp.clip(a, self.low, self.high)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        inside = self.xp.ones(a.shape, dtype=bool)
        if self.low is not None:
            inside &= a >= self.low
        if self.high is not None:
            inside &= a <= self.high
        return (g * inside,)


class Maximum(Function):
    """z = max(a, b);  the gradient goes to the larger input, split evenly on ties."""

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(out_shape)

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # share_a: two compares, a product, a sum; then g * share_a, and g * (1 - share_a)
        need_a, need_b = self.needs_input_grad
        return numel(out_shape) * (4 + need_a + 2 * need_b)

    def forward(self, a: Array, b: Array) -> Array:
        z = self.xp.maximum(a, b)
        self.save(a, b)
        return z

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, b = self.saved  # both, for either gradient: who wins decides the share
        need_a, need_b = self.needs_input_grad
        share_a = (a > b) + 0.5 * (a == b)
        return (g * share_a if need_a else None), (g * (1.0 - share_a) if need_b else None)


class Minimum(Maximum):
    """z = min(a, b) (not -max(-a, -b): wrong on unsigned integers and the most negative
    integer);  the gradient goes to the smaller input, split evenly on ties."""

    flops, backward_flops = Maximum.flops, Maximum.backward_flops  # the same count as Maximum's

    def forward(self, a: Array, b: Array) -> Array:
        self.save(b, a)  # Maximum's backward with the roles swapped: the smaller one wins
        return self.xp.minimum(a, b)


class Where(Function):
    """z = cond ? a : b;  no gradient to cond."""

    flops_per_element = (1, (0, 1, 1))  # one select each

    def forward(self, cond: Array, a: Array, b: Array) -> Array:
        self.save(cond)
        return self.xp.where(cond, a, b)

    def backward(self, g: Array) -> tuple[None, Array | None, Array | None]:
        (cond,) = self.saved
        _, need_a, need_b = self.needs_input_grad
        zero = self.xp.zeros((), dtype=g.dtype)
        return (None, self.xp.where(cond, g, zero) if need_a else None,
                self.xp.where(cond, zero, g) if need_b else None)


class Cast(Function):
    """z = a.astype(dtype); the gradient is cast back in backward (by Tensor.backward)."""

    flops_per_element = (0, 0)  # a conversion, no arithmetic

    dtype: Any

    def forward(self, a: Array) -> Array:
        return a.astype(self.dtype)

    def backward(self, g: Array) -> tuple[Array]:
        return (g,)


# --- activations: named array functions, so kernels can take over ------------------------------
class Relu(Function):
    """z = max(a, 0);  dz/da = 1 where z > 0 (0 at the kink)."""

    flops_per_element = (1, 2)  # compare, product

    def forward(self, a: Array) -> Array:
        z = self.call("relu_forward", a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (self.call("relu_backward", g, z),)


class Tanh(Function):
    """z = tanh(a);  dz/da = 1 - z**2, so only the output is saved."""

    flops_per_element = (1, 3)

    def forward(self, a: Array) -> Array:
        z = self.call("tanh_forward", a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (self.call("tanh_backward", g, z),)


class Sigmoid(Function):
    """z = 1 / (1 + exp(-a));  dz/da = z (1 - z)."""

    flops_per_element = (4, 3)  # negate, exp, add, divide; y (1 - y) g

    def forward(self, a: Array) -> Array:
        z = self.call("sigmoid_forward", a)
        self.save(z)
        return z

    def backward(self, g: Array) -> tuple[Array]:
        (z,) = self.saved
        return (self.call("sigmoid_backward", g, z),)


class Gelu(Function):
    """z = 0.5 a (1 + tanh(k (a + 0.044715 a**3))), k = sqrt(2/pi): the tanh approximation."""

    flops_per_element = (9, 19)  # counted term by term on gelu_forward / gelu_backward

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("gelu_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("gelu_backward", g, a),)


class Softplus(Function):
    """z = log(1 + exp(beta a)) / beta, and z = a where beta a > threshold (PyTorch's softplus);
    dz/da = sigmoid(beta a), 1 above the threshold. Saves the input (the derivative needs it)."""

    flops_per_element = (5, 6)  # beta a, exp, 1 +, log, / beta; g sigmoid(beta a)

    beta: float
    threshold: float

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("softplus_forward", a, self.beta, self.threshold)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("softplus_backward", g, a, self.beta, self.threshold),)


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


@reference_function("softplus_forward")
def softplus_forward(x: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    xp = array_module(x)
    z = beta * x
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): exp of a non-positive number only, no overflow
    soft = (xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))) / beta
    return xp.where(z > threshold, x, soft).astype(x.dtype, copy=False)


@reference_function("softplus_backward")
def softplus_backward(g: Array, x: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    z = beta * x
    return (g * array_module(x).where(z > threshold, 1, sigmoid_forward(z))).astype(
        g.dtype, copy=False)


# --- more activations: PyTorch's, each a named forward / backward pair kept on its input ---------
from tinygrad_lab.ops.maths import erf  # noqa: E402  (erf lives with the other special functions)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class LeakyRelu(Function):
    """z = a where a > 0, else negative_slope * a;  dz/da = 1 or negative_slope."""

    flops_per_element = (3, 3)  # compare, product, select; the same backward

    negative_slope: float

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("leaky_relu_forward", a, self.negative_slope)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("leaky_relu_backward", g, a, self.negative_slope),)


class Elu(Function):
    """z = a where a > 0, else alpha (exp(a) - 1);  dz/da = 1, else alpha exp(a)."""

    flops_per_element = (4, 4)  # compare, expm1, product, select; compare, exp, 2 products

    alpha: float

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("elu_forward", a, self.alpha)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("elu_backward", g, a, self.alpha),)


class Selu(Function):
    """z = scale * elu(a, alpha) with the self-normalising constants of Klambauer et al."""

    flops_per_element = (5, 5)  # elu's, and the scale

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("selu_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("selu_backward", g, a),)


class Silu(Function):
    """z = a sigmoid(a) (swish);  dz/da = s (1 + a (1 - s)) with s = sigmoid(a) recomputed."""

    flops_per_element = (5, 9)  # sigmoid 4, product; sigmoid 4, 1 - s, a *, 1 +, s *, g *

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("silu_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("silu_backward", g, a),)


class Mish(Function):
    """z = a tanh(softplus(a));  dz/da = t + a sigmoid(a) (1 - t**2), t = tanh(softplus(a))."""

    flops_per_element = (7, 15)  # softplus 5, tanh, product; t 6, sigmoid 4, t*t, 1 -, 2 *, +, *

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("mish_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("mish_backward", g, a),)


class Softsign(Function):
    """z = a / (1 + |a|);  dz/da = 1 / (1 + |a|)**2."""

    flops_per_element = (3, 4)  # abs, add, divide; abs, add, square, divide

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("softsign_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("softsign_backward", g, a),)


class Hardtanh(Function):
    """z = min(max(a, min_val), max_val);  dz/da = 1 strictly inside, else 0 (PyTorch's)."""

    flops_per_element = (2, 4)  # max, min; two compares, and, product

    min_val: float
    max_val: float

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("hardtanh_forward", a, self.min_val, self.max_val)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("hardtanh_backward", g, a, self.min_val, self.max_val),)


class Relu6(Function):
    """z = min(max(a, 0), 6), hardtanh on [0, 6];  dz/da = 1 on (0, 6)."""

    flops_per_element = (2, 4)

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("relu6_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("relu6_backward", g, a),)


class Hardsigmoid(Function):
    """z = min(max(a + 3, 0), 6) / 6;  dz/da = 1/6 on (-3, 3)."""

    flops_per_element = (4, 5)  # add, max, min, divide; two compares, and, two products

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("hardsigmoid_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("hardsigmoid_backward", g, a),)


class Hardswish(Function):
    """z = a min(max(a + 3, 0), 6) / 6;  dz/da = 0 below -3, a/3 + 1/2 up to 3, 1 above."""

    flops_per_element = (5, 6)  # hardsigmoid 4, product; two compares, a/3 + 1/2, 2 selects

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("hardswish_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("hardswish_backward", g, a),)


class GeluExact(Function):
    """z = a Phi(a) = a (1 + erf(a / sqrt 2)) / 2, the exact GELU (torch's default);
    dz/da = Phi(a) + a phi(a), phi the standard normal density."""

    flops_per_element = (5, 11)  # scale, erf, add, 2 products; Phi 4, phi 4 (a*a, *, exp, *),
    # a *, +, g *

    def forward(self, a: Array) -> Array:
        self.save(a)
        return self.call("gelu_exact_forward", a)

    def backward(self, g: Array) -> tuple[Array]:
        (a,) = self.saved
        return (self.call("gelu_exact_backward", g, a),)


@reference_function("leaky_relu_forward")
def leaky_relu_forward(x: Array, negative_slope: float = 0.01) -> Array:
    return array_module(x).where(x > 0, x, x * negative_slope)


@reference_function("leaky_relu_backward")
def leaky_relu_backward(g: Array, x: Array, negative_slope: float = 0.01) -> Array:
    return array_module(x).where(x > 0, g, g * negative_slope)


@reference_function("elu_forward")
def elu_forward(x: Array, alpha: float = 1.0) -> Array:
    xp = array_module(x)
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))  # no overflow for large x


@reference_function("elu_backward")
def elu_backward(g: Array, x: Array, alpha: float = 1.0) -> Array:
    xp = array_module(x)
    return xp.where(x > 0, g, g * (alpha * xp.exp(xp.minimum(x, 0))))


@reference_function("selu_forward")
def selu_forward(x: Array) -> Array:
    return SELU_SCALE * elu_forward(x, SELU_ALPHA)


@reference_function("selu_backward")
def selu_backward(g: Array, x: Array) -> Array:
    return elu_backward(g * SELU_SCALE, x, SELU_ALPHA)


@reference_function("silu_forward")
def silu_forward(x: Array) -> Array:
    return x * sigmoid_forward(x)


@reference_function("silu_backward")
def silu_backward(g: Array, x: Array) -> Array:
    s = sigmoid_forward(x)
    return g * (s * (1 + x * (1 - s)))


def _tanh_softplus(x: Array) -> Array:
    xp = array_module(x)
    # softplus as max(x, 0) + log1p(exp(-|x|)): exp of a non-positive number only
    return xp.tanh(xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x))))


@reference_function("mish_forward")
def mish_forward(x: Array) -> Array:
    return x * _tanh_softplus(x)


@reference_function("mish_backward")
def mish_backward(g: Array, x: Array) -> Array:
    t = _tanh_softplus(x)
    return g * (t + x * sigmoid_forward(x) * (1 - t * t))


@reference_function("softsign_forward")
def softsign_forward(x: Array) -> Array:
    return x / (1 + array_module(x).abs(x))


@reference_function("softsign_backward")
def softsign_backward(g: Array, x: Array) -> Array:
    d = 1 + array_module(x).abs(x)
    return g / (d * d)


@reference_function("hardtanh_forward")
def hardtanh_forward(x: Array, min_val: float = -1.0, max_val: float = 1.0) -> Array:
    xp = array_module(x)
    return xp.minimum(xp.maximum(x, min_val), max_val)


@reference_function("hardtanh_backward")
def hardtanh_backward(g: Array, x: Array, min_val: float = -1.0, max_val: float = 1.0) -> Array:
    return g * ((x > min_val) & (x < max_val))


@reference_function("relu6_forward")
def relu6_forward(x: Array) -> Array:
    return hardtanh_forward(x, 0.0, 6.0)


@reference_function("relu6_backward")
def relu6_backward(g: Array, x: Array) -> Array:
    return hardtanh_backward(g, x, 0.0, 6.0)


@reference_function("hardsigmoid_forward")
def hardsigmoid_forward(x: Array) -> Array:
    return hardtanh_forward(x + 3.0, 0.0, 6.0) / 6.0


@reference_function("hardsigmoid_backward")
def hardsigmoid_backward(g: Array, x: Array) -> Array:
    return hardtanh_backward(g, x, -3.0, 3.0) / 6.0


@reference_function("hardswish_forward")
def hardswish_forward(x: Array) -> Array:
    return x * hardtanh_forward(x + 3.0, 0.0, 6.0) / 6.0


@reference_function("hardswish_backward")
def hardswish_backward(g: Array, x: Array) -> Array:
    xp = array_module(x)
    return xp.where(x < -3.0, 0.0 * g, xp.where(x <= 3.0, g * (x / 3.0 + 0.5), g))


@reference_function("gelu_exact_forward")
def gelu_exact_forward(x: Array) -> Array:
    return x * 0.5 * (1 + erf(x * SQRT_HALF))


@reference_function("gelu_exact_backward")
def gelu_exact_backward(g: Array, x: Array) -> Array:
    cdf = 0.5 * (1 + erf(x * SQRT_HALF))
    pdf = INV_SQRT_2PI * array_module(x).exp(-0.5 * (x * x))
    return g * (cdf + x * pdf)


# --- the activation registry: every list of activation names is derived from it ---------------
class Activation(NamedTuple):
    """A registered activation: its op (`Tensor.<name>` applies it), and what its named backward
    `<name>_backward(g, kept)` takes, the op's "output" or its "input". The fused epilogues of
    Linear and Conv2d run `<name>_forward` / `<name>_backward` with the op's default parameters,
    and keep `kept` for backward."""

    op: type[Function]
    keeps: str


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(Relu, "output"),
    "tanh": Activation(Tanh, "output"),
    "sigmoid": Activation(Sigmoid, "output"),
    "gelu": Activation(Gelu, "input"),
    "softplus": Activation(Softplus, "input"),
    "leaky_relu": Activation(LeakyRelu, "input"),
    "elu": Activation(Elu, "input"),
    "selu": Activation(Selu, "input"),
    "silu": Activation(Silu, "input"),
    "mish": Activation(Mish, "input"),
    "softsign": Activation(Softsign, "input"),
    "hardtanh": Activation(Hardtanh, "input"),
    "relu6": Activation(Relu6, "input"),
    "hardsigmoid": Activation(Hardsigmoid, "input"),
    "hardswish": Activation(Hardswish, "input"),
}
"""name -> Activation: what `activation=` accepts (nn.Linear, nn.Conv2d, F.linear, F.conv2d,
keras Dense and Activation), and the functions of nn.functional of the same names."""


def activation_flops(activation: str | None) -> tuple[int, int]:
    """(forward, backward) FLOPs per element of a registered activation; (0, 0) for None."""
    if activation is None:
        return 0, 0
    forward, backward = ACTIVATIONS[activation].op.flops_per_element or (0, 0)
    return forward, int(backward)  # type: ignore[arg-type]  # unary: one backward count


def check_activation(activation: str | None, caller: str, also: tuple[str, ...] = ()) -> None:
    """Raise ValueError naming the choices unless `activation` is None, registered, or one of
    the caller's own names `also` (Keras' 'linear' and 'softmax')."""
    if activation is not None and activation not in ACTIVATIONS and activation not in also:
        raise ValueError(f"{caller}: unknown activation {activation!r}; choose from None, "
                         + ", ".join(repr(name) for name in (*also, *ACTIVATIONS)))
