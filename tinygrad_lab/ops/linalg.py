"""Matrix products: batched matmul with broadcasting, and the fused dense layer.

The products themselves belong to BLAS (the backend's `@`); what is fused here is what surrounds
them: the bias add and the activation of a dense layer, in one named array function.
"""

from __future__ import annotations

from tinygrad_lab.backends import Array, array_module, reference_function
from tinygrad_lab.function import Ctx, Function


class MatMul(Function):
    """z = a @ b over the last two axes, leading axes broadcast.

    dz/da = g @ b^T,  dz/db = a^T @ g  (batch broadcasting undone by Tensor.backward).
    """

    def forward(self, ctx: Ctx, a: Array, b: Array) -> Array:
        ctx.save(a, b)
        return a @ b

    def flops(self, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> int:
        return 2 * in_shapes[0][-1] * _size(out_shape)  # one multiply-add per term

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array | None, Array | None]:
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = g @ b.swapaxes(-1, -2) if need_a else None
        gb = a.swapaxes(-1, -2) @ g if need_b else None
        return ga, gb


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


ACTIVATIONS = (None, "relu", "tanh", "sigmoid", "gelu")


class Linear(Function):
    """z = act(x @ w + b), x (..., I), w (I, O), b (O,): a Keras Dense layer in one node.

    Backward: gy = act'(g); gb = sum of gy over leading axes; gx = gy @ w^T; gw = x^T @ gy.
    ReLU, tanh and sigmoid save their output; GELU saves its input (its derivative needs it).
    """

    activation: str | None

    def flops(self, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> int:
        return 2 * in_shapes[1][0] * _size(out_shape) + 2 * _size(out_shape)

    def forward(self, ctx: Ctx, x: Array, w: Array, b: Array | None = None) -> Array:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, w.shape[0])  # (N, I): one GEMM, not one per leading index
        y = x2 @ w  # (N, O), a fresh array the bias kernel may update in place
        act = self.activation
        if act == "gelu":
            pre = ctx.call("bias_act_forward", y, b, None) if b is not None else y
            out = ctx.call("gelu_forward", pre)
            ctx.save(x2, w, pre)
        else:
            out = ctx.call("bias_act_forward", y, b, act) if (b is not None or act) else y
            ctx.save(x2, w, out if act else None)  # no activation: nothing of the output needed
        return out.reshape(*lead, w.shape[1])

    def backward(self, ctx: Ctx, g: Array) -> tuple[Array | None, ...]:
        x2, w, kept = ctx.saved
        act = self.activation
        out_features = w.shape[1]
        gy2 = g.reshape(-1, out_features)  # (N, O) with N = product of leading axes
        if act:
            gy2 = ctx.call(f"{act}_backward", gy2, kept)
        need_x, need_w = ctx.needs_input_grad[:2]
        gx = (gy2 @ w.T).reshape(*g.shape[:-1], w.shape[0]) if need_x else None
        gw = (x2.T @ gy2) if need_w else None
        if len(ctx.needs_input_grad) == 3:
            gb = ctx.call("sum_to_shape", gy2, (out_features,)) if ctx.needs_input_grad[2] else None
            return gx, gw, gb
        return gx, gw


@reference_function("bias_act_forward")
def bias_act_forward(y: Array, b: Array | None, activation: str | None) -> Array:
    """act(y + b) for y (..., O), b (O,) or None; activation one of ACTIVATIONS but 'gelu'."""
    xp = array_module(y)
    z = y + b if b is not None else y
    if activation is None:
        return z
    if activation == "relu":
        return xp.maximum(z, 0)
    if activation == "tanh":
        return xp.tanh(z)
    if activation == "sigmoid":
        from tinygrad_lab.ops.elementwise import sigmoid_forward

        return sigmoid_forward(z)
    raise ValueError(f"bias_act_forward: unknown activation {activation!r}")
