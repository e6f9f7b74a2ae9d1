"""Matrix products: batched matmul with broadcasting, and the fused dense layer.

The products themselves belong to BLAS (the backend's `@`); what is fused here is what surrounds
them: the bias add and the activation of a dense layer, in one named array function.
"""

from __future__ import annotations

from tinygrad_lab.backends import REFERENCES, Array, reference_function
from tinygrad_lab.flops import Shape, numel
from tinygrad_lab.function import Function
from tinygrad_lab.ops.elementwise import ACTIVATIONS, activation_flops, check_activation


class MatMul(Function):
    """z = a @ b over the last two axes, leading axes broadcast.

    dz/da = g @ b^T,  dz/db = a^T @ g  (batch broadcasting undone by Tensor.backward).
    """

    def forward(self, a: Array, b: Array) -> Array:
        need_a, need_b = self.needs_input_grad
        self.save(a if need_b else None, b if need_a else None)  # da needs b, db needs a
        return a @ b

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return 2 * in_shapes[0][-1] * numel(out_shape)  # a multiply-add per term: 2 M N K

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return self.flops(in_shapes, out_shape) * sum(self.needs_input_grad)  # a GEMM each

    def backward(self, g: Array) -> tuple[Array | None, Array | None]:
        a, b = self.saved
        ga = g @ b.swapaxes(-1, -2) if b is not None else None
        gb = a.swapaxes(-1, -2) @ g if a is not None else None
        return ga, gb


class Linear(Function):
    """z = act(x @ w + b), x (..., I), w (I, O), b (O,): a Keras Dense layer in one node.

    Backward: gy = act'(g); gb = sum of gy over leading axes; gx = gy @ w^T; gw = x^T @ gy.
    act: None or a name in elementwise.ACTIVATIONS. Those that keep their output (relu, tanh,
    sigmoid) run fused with the bias add; those whose derivative needs the input (gelu, softplus)
    keep the biased pre-activation and run `<act>_forward` after the bias add.
    """

    activation: str | None

    def flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # the GEMM 2 N I O, the bias add, the activation
        act_forward = activation_flops(self.activation)[0]
        per_out = 2 * in_shapes[1][0] + (len(in_shapes) == 3) + act_forward
        return numel(out_shape) * per_out

    def backward_flops(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # act'(g), then a GEMM for gx and one for gw, the bias gradient a sum over rows
        need = self.needs_input_grad
        per_out = (activation_flops(self.activation)[1] + 2 * in_shapes[1][0] * (need[0] + need[1])
                   + (len(need) == 3 and need[2]))
        return numel(out_shape) * per_out

    def forward(self, x: Array, w: Array, b: Array | None = None) -> Array:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, w.shape[0])  # (N, I): one GEMM, not one per leading index
        y = x2 @ w  # (N, O), a fresh array the bias kernel may update in place
        act = self.activation
        if act and ACTIVATIONS[act].keeps == "input":
            pre = self.call("bias_act_forward", y, b, None) if b is not None else y
            out = self.call(f"{act}_forward", pre)
            kept = pre
        else:
            out = self.call("bias_act_forward", y, b, act) if (b is not None or act) else y
            kept = out if act else None  # no activation: nothing of the output needed
        need_x, need_w = self.needs_input_grad[:2]
        self.save(x2 if need_w else None, w if need_x else None, kept)  # gw needs x, gx needs w
        return out.reshape(*lead, w.shape[1])

    def backward(self, g: Array) -> tuple[Array | None, ...]:
        x2, w, kept = self.saved
        act = self.activation
        out_features = g.shape[-1]
        gy2 = g.reshape(-1, out_features)  # (N, O) with N = product of leading axes
        if act:
            gy2 = self.call(f"{act}_backward", gy2, kept)
            self.workspace(gy2)
        gx = (gy2 @ w.T).reshape(*g.shape[:-1], w.shape[0]) if w is not None else None
        gw = (x2.T @ gy2) if x2 is not None else None
        if len(self.needs_input_grad) == 3:
            need_b = self.needs_input_grad[2]
            return gx, gw, (self.call("sum_to_shape", gy2, (out_features,)) if need_b else None)
        return gx, gw


@reference_function("bias_act_forward")
def bias_act_forward(y: Array, b: Array | None, activation: str | None) -> Array:
    """act(y + b) for y (..., O), b (O,) or None; activation None or a name in ACTIVATIONS
    (its `<name>_forward` reference, default parameters)."""
    check_activation(activation, "bias_act_forward")
    z = y + b if b is not None else y
    return z if activation is None else REFERENCES[f"{activation}_forward"](z)
