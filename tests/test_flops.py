"""FLOP counts: every op of tinygrad_lab.ops against a count done by hand, forward and backward.

Each case builds a small graph, runs it forward and backward under tl.profile(), and compares the
records of one op class with the hand count written next to it (the convention is in
tinygrad_lab/flops.py). Every Function subclass of tinygrad_lab.ops must have a case here and
must state its count (flops_per_element, or flops() and backward_flops()), so a new op cannot
quietly inherit a wrong one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import nn, ops, optim
from tinygrad_lab.function import Function
from tinygrad_lab.nn import functional as F
from tinygrad_lab.ops.attention import QKVAttention, rotary_tables
from tinygrad_lab.ops.elementwise import ACTIVATIONS, activation_flops

rng = np.random.default_rng(0)
ROPE = rotary_tables(np.arange(3), 2, dtype=np.float64)  # (cos, sin), each (T=3, D=2)


def _t(*shape: int, grad: bool = True, low: float = 0.5, high: float = 2.0) -> tl.Tensor:
    return tl.Tensor(rng.uniform(low, high, size=shape), requires_grad=grad)


@dataclass
class Case:
    id: str
    op: str  # the class whose records are counted
    build: Callable[[], tl.Tensor]
    forward: int  # FLOPs by hand
    backward: int


CASES = [
    # elementwise, on (2, 3): n = 6
    Case("add", "Add", lambda: _t(2, 3) + _t(2, 3), 6, 0),
    Case("add-broadcast", "Add", lambda: _t(2, 3) + _t(3), 6, 0),
    Case("sub", "Sub", lambda: _t(2, 3) - _t(2, 3), 6, 6),
    Case("sub-const", "Sub", lambda: _t(2, 3) - _t(2, 3, grad=False), 6, 0),
    Case("mul", "Mul", lambda: _t(2, 3) * _t(2, 3), 6, 12),
    Case("mul-const", "Mul", lambda: _t(2, 3) * _t(2, 3, grad=False), 6, 6),
    Case("div", "Div", lambda: _t(2, 3) / _t(2, 3), 6, 6 * 3),
    Case("div-const", "Div", lambda: _t(2, 3) / _t(2, 3, grad=False), 6, 6),
    Case("neg", "Neg", lambda: -_t(2, 3), 6, 6),
    Case("pow-3", "PowScalar", lambda: _t(2, 3) ** 3, 6, 6 * 3),
    Case("pow-2", "PowScalar", lambda: _t(2, 3) ** 2, 6, 6 * 2),
    Case("pow-0", "PowScalar", lambda: _t(2, 3) ** 0, 6, 0),
    Case("pow", "Pow", lambda: _t(2, 3) ** _t(2, 3), 6, 6 * (4 + 3)),
    Case("exp", "Exp", lambda: _t(2, 3).exp(), 6, 6),
    Case("log", "Log", lambda: _t(2, 3).log(), 6, 6),
    Case("sqrt", "Sqrt", lambda: _t(2, 3).sqrt(), 6, 12),
    Case("abs", "Abs", lambda: _t(2, 3).abs(), 6, 12),
    Case("clip", "Clip", lambda: _t(2, 3).clip(0.8, 1.5), 12, 6 * 4),
    Case("clip-low", "Clip", lambda: _t(2, 3).clip(0.8), 6, 6 * 2),
    Case("maximum", "Maximum", lambda: _t(2, 3).maximum(_t(2, 3)), 6, 6 * 7),
    Case("maximum-a", "Maximum", lambda: _t(2, 3).maximum(_t(2, 3, grad=False)), 6, 6 * 5),
    Case("where", "Where",
         lambda: tl.where(np.array([[True, False, True]] * 2), _t(2, 3), _t(2, 3)), 6, 12),
    Case("cast", "Cast", lambda: _t(2, 3).astype(np.float32), 0, 0),
    Case("relu", "Relu", lambda: _t(2, 3, low=-1).relu(), 6, 12),
    Case("tanh", "Tanh", lambda: _t(2, 3).tanh(), 6, 18),
    Case("sigmoid", "Sigmoid", lambda: _t(2, 3).sigmoid(), 6 * 4, 6 * 3),
    Case("gelu", "Gelu", lambda: _t(2, 3).gelu(), 6 * 9, 6 * 19),
    Case("softplus", "Softplus", lambda: _t(2, 3).softplus(), 6 * 5, 6 * 6),
    Case("leaky-relu", "LeakyRelu", lambda: _t(2, 3, low=-1).leaky_relu(), 6 * 3, 6 * 3),
    Case("elu", "Elu", lambda: _t(2, 3, low=-1).elu(), 6 * 4, 6 * 4),
    Case("selu", "Selu", lambda: _t(2, 3, low=-1).selu(), 6 * 5, 6 * 5),
    Case("silu", "Silu", lambda: _t(2, 3).silu(), 6 * 5, 6 * 9),
    Case("mish", "Mish", lambda: _t(2, 3).mish(), 6 * 7, 6 * 15),
    Case("softsign", "Softsign", lambda: _t(2, 3).softsign(), 6 * 3, 6 * 4),
    Case("hardtanh", "Hardtanh", lambda: _t(2, 3).hardtanh(), 6 * 2, 6 * 4),
    Case("relu6", "Relu6", lambda: _t(2, 3).relu6(), 6 * 2, 6 * 4),
    Case("hardsigmoid", "Hardsigmoid", lambda: _t(2, 3).hardsigmoid(), 6 * 4, 6 * 5),
    Case("hardswish", "Hardswish", lambda: _t(2, 3).hardswish(), 6 * 5, 6 * 6),
    Case("gelu-exact", "GeluExact", lambda: _t(2, 3).gelu("none"), 6 * 5, 6 * 11),
    # maths (ops/maths.py), on (2, 3): a special function counts 1, as exp and log do
    Case("sin", "Sin", lambda: _t(2, 3).sin(), 6, 6 * 2),
    Case("cos", "Cos", lambda: _t(2, 3).cos(), 6, 6 * 3),
    Case("tan", "Tan", lambda: _t(2, 3).tan(), 6, 6 * 3),
    Case("asin", "Asin", lambda: _t(2, 3, low=-0.9, high=0.9).asin(), 6, 6 * 4),
    Case("acos", "Acos", lambda: _t(2, 3, low=-0.9, high=0.9).acos(), 6, 6 * 5),
    Case("atan", "Atan", lambda: _t(2, 3).atan(), 6, 6 * 3),
    Case("sinh", "Sinh", lambda: _t(2, 3).sinh(), 6, 6 * 2),
    Case("cosh", "Cosh", lambda: _t(2, 3).cosh(), 6, 6 * 2),
    Case("reciprocal", "Reciprocal", lambda: _t(2, 3).reciprocal(), 6, 6 * 3),
    Case("rsqrt", "Rsqrt", lambda: _t(2, 3).rsqrt(), 6 * 2, 6 * 4),
    Case("log2", "Log2", lambda: _t(2, 3).log2(), 6, 6 * 2),
    Case("log1p", "Log1p", lambda: _t(2, 3).log1p(), 6, 6 * 2),
    Case("exp2", "Exp2", lambda: _t(2, 3).exp2(), 6, 6 * 2),
    Case("expm1", "Expm1", lambda: _t(2, 3).expm1(), 6, 6 * 2),
    Case("erf", "Erf", lambda: _t(2, 3).erf(), 6, 6 * 5),
    Case("floor", "Rounding", lambda: _t(2, 3).floor(), 6, 0),
    Case("atan2", "Atan2", lambda: _t(2, 3).atan2(_t(2, 3)), 6, 6 * (3 + 2 + 3)),
    Case("atan2-a", "Atan2", lambda: _t(2, 3).atan2(_t(2, 3, grad=False)), 6, 6 * (3 + 2)),
    Case("fmod", "Fmod", lambda: _t(2, 3).fmod(_t(2, 3)), 6, 6 * 4),
    Case("remainder", "Remainder", lambda: _t(2, 3).remainder(_t(2, 3)), 6, 6 * 4),
    Case("floor-divide", "FloorDivide", lambda: _t(2, 3).floor_divide(_t(2, 3)), 6 * 2, 0),
    Case("trunc-divide", "TruncDivide",
         lambda: tl.div(_t(2, 3), _t(2, 3), rounding_mode="trunc"), 6 * 2, 0),
    Case("tril", "Triangle", lambda: _t(3, 3).tril(), 9, 9),
    # reductions: the input's elements; max's backward: mask, count, product (6 each), divide (2)
    Case("sum", "Sum", lambda: _t(2, 3).sum(axis=1), 6, 0),
    Case("max", "Max", lambda: _t(2, 3).max(axis=1), 6, 3 * 6 + 2),
    # movement: none, but the scatter-add of an integer index
    Case("reshape", "Reshape", lambda: _t(2, 3).reshape(3, 2), 0, 0),
    Case("permute", "Permute", lambda: _t(2, 3).transpose(0, 1), 0, 0),
    Case("expand", "Expand", lambda: _t(1, 3).expand(4, 3), 0, 0),
    Case("slice", "GetItem", lambda: _t(4, 3)[1:3], 0, 0),
    Case("index", "GetItem", lambda: _t(4, 3)[np.array([0, 2, 2])], 0, 3 * 3),
    Case("pad", "Pad", lambda: _t(2, 3).pad(((1, 1), (0, 2))), 0, 0),
    # reductions, scans, movement and indexing by index tensors on x (2, 3): n = 6
    Case("min", "Min", lambda: _t(2, 3).min(axis=1), 6, 3 * 6 + 2),
    Case("minimum", "Minimum", lambda: _t(2, 3).minimum(_t(2, 3)), 6, 6 * 7),
    Case("prod", "Prod", lambda: _t(2, 3).prod(axis=1), 6, 4 * 6),
    Case("cumsum", "CumSum", lambda: _t(2, 3).cumsum(1), 6, 6),
    Case("cumprod", "CumProd", lambda: _t(2, 3).cumprod(1), 6, 4 * 6),
    Case("logsumexp", "LogSumExp", lambda: _t(2, 3).logsumexp(1), 4 * 6, 3 * 6),
    Case("flip", "Flip", lambda: _t(2, 3).flip(1), 0, 0),
    Case("roll", "Roll", lambda: _t(2, 3).roll(1, 1), 0, 0),
    Case("gather", "Gather", lambda: _t(2, 3).gather(1, np.array([[0, 0], [1, 2]])), 0, 4),
    Case("scatter", "Scatter", lambda: _t(2, 3).scatter(1, np.array([[0], [2]]), _t(2, 1)), 0,
         0),
    Case("scatter-reduce", "ScatterReduce",
         lambda: _t(2, 3).scatter_reduce(1, np.array([[0], [2]]), _t(2, 1), "sum"), 6 + 2,
         4 * (6 + 2)),
    Case("cat", "Concatenate", lambda: tl.cat([_t(2, 3), _t(1, 3)]), 0, 0),
    Case("split", "Split", lambda: _t(3, 2).unbind(0)[1], 0, 0),
    Case("to-device", "ToDevice", lambda: _t(2, 3).to("standin"), 0, 0),
    # linear algebra: 2 M N K forward, one GEMM per input needing a gradient
    Case("matmul", "MatMul", lambda: _t(2, 3, 4) @ _t(4, 5), 2 * 4 * (2 * 3 * 5),
         2 * (2 * 4 * 2 * 3 * 5)),
    Case("matmul-frozen-b", "MatMul", lambda: _t(3, 4) @ _t(4, 5, grad=False), 2 * 3 * 4 * 5,
         2 * 3 * 4 * 5),
    # linear, x (4, 3) @ w (3, 5): 20 outputs, GEMM 2*3 per output, + bias + relu (1 fwd, 2 bwd);
    # backward for w and b only (x is data): GEMM 6 + bias sum 1 + relu 2 per output
    Case("linear-relu", "Linear",
         lambda: F.linear(_t(4, 3, grad=False), _t(3, 5), _t(5), activation="relu"),
         20 * (6 + 1 + 1), 20 * (6 + 1 + 2)),
    Case("linear-gelu", "Linear", lambda: F.linear(_t(4, 3), _t(3, 5), activation="gelu"),
         20 * (6 + 9), 20 * (2 * 6 + 19)),
    Case("embedding", "Embedding", lambda: F.embedding(np.array([[1, 2, 2], [0, 9, 1]]),
                                                       _t(10, 4)), 0, 6 * 4),
    # nn: softmax 5 per element forward, 4 backward; cross-entropy 7 per logit, 1 backward
    Case("softmax", "Softmax", lambda: F.softmax(_t(2, 3)), 30, 24),
    Case("log-softmax", "LogSoftmax", lambda: F.log_softmax(_t(2, 3)), 30, 24),
    Case("cross-entropy", "SoftmaxCrossEntropy",
         lambda: F.cross_entropy(_t(4, 5), np.array([0, 4, 2, 2])), 7 * 20, 20),
    # norms over (2, 3, 4): 24 elements
    Case("layer-norm", "LayerNorm", lambda: F.layer_norm(_t(2, 3, 4), _t(4), _t(4)), 24 * 7,
         24 * 13),
    Case("rms-norm", "RMSNorm", lambda: F.rms_norm(_t(2, 3, 4), _t(4)), 24 * 4, 24 * 9),
    # attention: scores (1, 2, 3, 3) = 18; scale, select, softmax 5; backward 5
    Case("masked-softmax", "MaskedSoftmax", lambda: F.masked_softmax(_t(1, 2, 3, 3), 0.5, True),
         18 * 7, 18 * 5),
    Case("softmax-unmasked", "MaskedSoftmax", lambda: F.masked_softmax(_t(1, 2, 3, 3), 0.5),
         18 * 6, 18 * 5),
    # qkv (B=2, T=3, 3C=12), H=2, D=2: scores B*H*T*T = 36, each product B*T*T*C = 72;
    # backward recomputes P (q k^T and the softmax) before its four products
    Case("qkv-attention", "QKVAttention",
         lambda: QKVAttention.apply(_t(2, 3, 12), num_heads=2, causal=True, mask=None,
                                    cos=None, sin=None),
         2 * 2 * 72 + 36 * 7, 2 * 72 + 36 * 7 + 4 * 2 * 72 + 36 * 5),
    # with rotary tables: 3 per element of q and of k, B*T*C = 24 each way
    Case("qkv-attention-rope", "QKVAttention",
         lambda: QKVAttention.apply(_t(2, 3, 12), num_heads=2, causal=False, mask=None,
                                    cos=ROPE[0], sin=ROPE[1]),
         2 * 3 * 24 + 2 * 2 * 72 + 36 * 6, 2 * 72 + 36 * 6 + 4 * 2 * 72 + 36 * 5 + 2 * 3 * 24),
    Case("rotary", "Rotary", lambda: F.apply_rotary(_t(1, 3, 4)), 12 * 3, 12 * 3),
    # conv: x (2, 3, 5, 5), w (4, 3, 3, 3), padding 1 -> y (2, 4, 5, 5) = 200 outputs, 27 per
    # window; backward: bias sum 1 + two GEMMs 2*27 each per output, col2im's 2*25*27 adds
    Case("conv2d", "Conv2d", lambda: F.conv2d(_t(2, 3, 5, 5), _t(4, 3, 3, 3), _t(4), padding=1),
         200 * (2 * 27 + 1), 200 * (1 + 2 * 2 * 27) + 2 * 25 * 27),
    # groups 2: x (1, 4, 4, 4), w (4, 2, 3, 3) -> y (1, 4, 2, 2) = 16, window 2*3*3 = 18, relu;
    # x is data: no gcols GEMM, no col2im
    Case("conv2d-groups-relu", "Conv2d",
         lambda: F.conv2d(_t(1, 4, 4, 4, grad=False), _t(4, 2, 3, 3), groups=2,
                          activation="relu"),
         16 * (2 * 18 + 1), 16 * (2 + 2 * 18)),
    # pooling x (1, 2, 4, 4), 2x2 windows -> 8 outputs
    Case("max-pool", "MaxPool2d", lambda: F.max_pool2d(_t(1, 2, 4, 4), 2), 8 * 4, 8),
    Case("avg-pool", "AvgPool2d", lambda: F.avg_pool2d(_t(1, 2, 4, 4), 2), 8 * 4, 8 * 5),
    # the optioned pools (ops/pool.py) count as the plain ones: 8 outputs, 2x2 windows
    Case("max-pool-dilated", "MaxPool2dDilated",
         lambda: F.max_pool2d(_t(1, 2, 4, 4), 2, stride=1, dilation=2), 8 * 4, 8),
    Case("avg-pool-ceil", "AvgPool2dPadded",
         lambda: F.avg_pool2d(_t(1, 2, 4, 4), 2, ceil_mode=True), 8 * 4, 8 * 5),
    # transposed conv: x (1, 2, 2, 2), w (2, 3, 2, 2) -> y (1, 3, 3, 3) = 27; window 3*4 = 12;
    # GEMM 2*8*12, col2im adds the 12*4 column entries, bias 27; backward two GEMMs, bias sum
    Case("conv-transpose2d", "ConvTranspose2d",
         lambda: F.conv_transpose2d(_t(1, 2, 2, 2), _t(2, 3, 2, 2), _t(3)),
         2 * 8 * 12 + 48 + 27, 2 * (2 * 8 * 12) + 27),
]


def _op_classes() -> dict[str, type[Function]]:
    found: dict[str, type[Function]] = {}
    for module in (getattr(ops, name) for name in ops.__all__):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Function) and cls is not Function \
                    and cls.__module__.startswith("tinygrad_lab.ops"):
                found[name] = cls
    return found


def _profile(build: Callable[[], tl.Tensor]) -> list[dict]:
    with tl.profile() as records:
        out = build()
        out.backward(np.ones(out.shape))
    return records


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_op_flops_match_hand_counts(case: Case) -> None:
    records = [r for r in _profile(case.build) if r["op"] == case.op]
    forward = [r for r in records if r["phase"] == "forward"]
    backward = [r for r in records if r["phase"] == "backward"]
    assert len(forward) == 1 and len(backward) == 1, records
    assert forward[0]["flops"] == case.forward
    assert backward[0]["flops"] == case.backward


def test_every_op_has_a_hand_count() -> None:
    assert set(_op_classes()) == {c.op for c in CASES}


@pytest.mark.parametrize("name", sorted(_op_classes()))
def test_every_op_states_its_count(name: str) -> None:
    """flops_per_element, or both flops() and backward_flops(), in the op's own class body:
    Function's fallback (one per output element, backward twice that) is for ops from outside."""
    cls = _op_classes()[name]
    own = vars(cls)
    assert "flops_per_element" in own or ("flops" in own and "backward_flops" in own), (
        f"{name}: set flops_per_element = (forward, backward) or define flops() and "
        "backward_flops() (the convention: tinygrad_lab/flops.py)")


def test_op_from_outside_counts_by_the_fallback() -> None:
    class Twice(Function):
        def forward(self, a: np.ndarray) -> np.ndarray:
            return a * 2

        def backward(self, g: np.ndarray) -> tuple[np.ndarray]:
            return (g * 2,)

    records = _profile(lambda: Twice.apply(_t(2, 3)))
    assert [(r["phase"], r["flops"]) for r in records] == [("forward", 6), ("backward", 12)]


@pytest.mark.parametrize(("make", "per_element"), [
    (lambda p: optim.SGD(p, lr=0.1), 2),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True), 2 + 3 + 2 + 2),
    (lambda p: optim.Adam(p), 14),
    (lambda p: optim.Adam(p, weight_decay=0.1), 16),
    (lambda p: optim.AdamW(p), 15),
    (lambda p: optim.RMSprop(p, momentum=0.9), 11),
    (lambda p: optim.Adagrad(p), 7),
])
def test_step_flops_of_a_training_step(make: Callable, per_element: int) -> None:
    """A two-layer MLP on (8, 6) inputs: every phase by hand."""
    model = nn.Sequential(nn.Linear(6, 5, activation="relu"), nn.Linear(5, 3))
    opt = make(model.parameters())
    x = tl.Tensor(rng.standard_normal((8, 6)).astype(np.float32))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    with tl.profile() as records:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # forward: 8*5 outputs of (2*6 + bias + relu), 8*3 of (2*5 + bias), cross-entropy 7 per logit
    forward = 40 * (12 + 1 + 1) + 24 * (10 + 1) + 7 * 24
    # backward: cross-entropy 1 per logit; layer 2: two GEMMs (2*5 each) and its bias; layer 1:
    # relu 2, the weight GEMM (x is data) 2*6, bias 1
    backward = 24 + 24 * (2 * 10 + 1) + 40 * (2 + 12 + 1)
    optimizer = per_element * (6 * 5 + 5 + 5 * 3 + 3)
    assert tl.flops.step_flops(records) == {"forward": forward, "backward": backward,
                                            "optimizer": optimizer,
                                            "total": forward + backward + optimizer}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_fused_activation_counts_as_the_op_alone(name: str) -> None:
    """Linear and Conv2d fold an activation in: it counts what the activation op counts."""
    alone = {r["phase"]: r["flops"] for r in _profile(lambda: getattr(_t(4, 5), name)())}
    assert activation_flops(name) == (alone["forward"] // 20, alone["backward"] // 20)
    fused = [r for r in _profile(lambda: F.linear(_t(4, 3), _t(3, 5), _t(5), activation=name))
             if r["op"] == "Linear"]
    gemm = 2 * 3 * 20
    assert [r["flops"] for r in fused] == [gemm + 20 + alone["forward"],
                                           alone["backward"] + 2 * gemm + 20]
