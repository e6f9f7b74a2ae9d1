"""Elementwise ops. Binary ops broadcast; Function.apply's caller undoes it in backward.

Activations call named array functions (`relu_forward`, ...) so a fused kernel can replace the
reference body; the references below are the definition of the maths.
"""

from __future__ import annotations

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
    """z = a ** b;  dz/da = b * a**(b-1),  dz/db = z * log(a) (a > 0 where b needs a gradient)."""

    flops_per_element = (1, (4, 3))  # a: b - 1, pow, two products; b: log, two products

    def forward(self, a: Array, b: Array) -> Array:
        z = a**b
        need_a, need_b = self.needs_input_grad
        self.save(a, b if need_a else None, z if need_b else None)
        return z

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, b, z = self.saved
        ga = g * b * a ** (b - 1) if b is not None else None
        gb = g * z * self.xp.log(a) if z is not None else None
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
