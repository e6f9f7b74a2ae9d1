"""Neural-network ops with numerically delicate maths: softmax, log-softmax, cross-entropy.

Each is one node whose backward uses the saved output, never the exponentials of large logits.
"""

from __future__ import annotations

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function


class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max));  dx = y * (g - sum(g * y))."""

    axis: int
    flops_per_element = (5, 4)  # max, subtract, exp, sum, divide; g y, sum, subtract, product

    def forward(self, x: Array) -> Array:
        y = self.call("softmax_forward", x, self.axis)
        self.save(y)
        return y

    def backward(self, g: Array) -> tuple[Array]:
        (y,) = self.saved
        return (self.call("softmax_backward", g, y, self.axis),)


class LogSoftmax(Function):
    """y = x - max - log(sum(exp(x - max)));  dx = g - exp(y) * sum(g)."""

    axis: int
    flops_per_element = (5, 4)  # max, subtract, exp, sum, subtract; exp, sum, product, subtract

    def forward(self, x: Array) -> Array:
        y = self.call("log_softmax_forward", x, self.axis)
        self.save(y)
        return y

    def backward(self, g: Array) -> tuple[Array]:
        (y,) = self.saved
        return (self.call("log_softmax_backward", g, y, self.axis),)


class SoftmaxCrossEntropy(Function):
    """loss = mean_i(logsumexp(x_i) - x_i[label_i]) for logits x (N, C), integer labels (N,).

    Loss and gradient come from one pass: dx = (softmax(x) - onehot(labels)) / N.
    """

    labels: Array

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # log-softmax (5 per logit), then its exp and the division by N (the labels' picks and
        # the loss sum are per row)
        return 7 * numel(in_shapes[0])

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return numel(in_shapes[0])  # dlogits * g

    def forward(self, logits: Array) -> Array:
        loss, dlogits = self.call("softmax_cross_entropy_forward", logits, self.labels)
        self.save(dlogits)
        return loss

    def backward(self, g: Array) -> tuple[Array]:
        (dlogits,) = self.saved
        return (dlogits * g,)


@reference_function("softmax_forward")
def softmax_forward(x: Array, axis: int = -1) -> Array:
    xp = array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@reference_function("softmax_backward")
def softmax_backward(g: Array, y: Array, axis: int = -1) -> Array:
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


@reference_function("log_softmax_forward")
def log_softmax_forward(x: Array, axis: int = -1) -> Array:
    xp = array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


@reference_function("log_softmax_backward")
def log_softmax_backward(g: Array, y: Array, axis: int = -1) -> Array:
    xp = array_module(y)
    return g - xp.exp(y) * g.sum(axis=axis, keepdims=True)


@reference_function("softmax_cross_entropy_forward")
def softmax_cross_entropy_forward(logits: Array, labels: Array) -> tuple[Array, Array]:
    """(mean loss as a 0-d array, d loss / d logits) for logits (N, C), labels (N,)."""
    xp = array_module(logits)
    n = logits.shape[0]
    log_p = log_softmax_forward(logits, -1)
    rows = xp.arange(n)
    loss = -log_p[rows, labels].sum() / max(n, 1)
    grad = xp.exp(log_p)
    grad[rows, labels] -= 1
    grad /= max(n, 1)
    return xp.asarray(loss, dtype=logits.dtype), grad
