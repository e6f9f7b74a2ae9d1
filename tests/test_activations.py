"""The activation registry (ops/elementwise.py:ACTIVATIONS) and what is derived from it.

Every registered activation is accepted by every `activation=` (nn.Linear, F.linear, nn.Conv2d,
F.conv2d, keras Dense and Activation) and gives there what the Tensor method gives after the layer,
values and gradients, on the kernel and the reference path; the fused node keeps the output or the
input as the registry says. An unknown name raises one error naming every choice.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinygrad_lab import Tensor, keras, nn
from tinygrad_lab.nn import functional as F
from tinygrad_lab.ops.elementwise import ACTIVATIONS
from tinygrad_lab.testing.devices import DeviceCase

NAMES = list(ACTIVATIONS)


def _fused_and_composed(layer, x: np.ndarray, name: str, device: DeviceCase) -> None:
    """layer(x) with its activation against the same layer without one, then Tensor.<name>,
    on `device`."""
    layer.to(device.device)
    ours = device.tensor(x, requires_grad=True)
    fused = layer(ours)
    fused.backward(np.ones(fused.shape))
    grads = [p.grad.numpy().copy() for p in layer.parameters()]
    layer.zero_grad()
    activation, layer.activation = layer.activation, None
    theirs = device.tensor(x, requires_grad=True)
    composed = getattr(layer(theirs), name)()
    composed.backward(np.ones(composed.shape))
    layer.activation = activation
    np.testing.assert_allclose(fused.numpy(), composed.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-13)
    for got, p in zip(grads, layer.parameters()):
        np.testing.assert_allclose(got, p.grad.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_linear_fuses_every_activation(name: str, device: DeviceCase) -> None:
    x = np.random.default_rng(0).standard_normal((3, 2, 4))  # (B, T, C)
    _fused_and_composed(nn.Linear(4, 5, activation=name, dtype=np.float64), x, name, device)


@pytest.mark.parametrize("name", NAMES)
def test_conv2d_fuses_every_activation(name: str, device: DeviceCase) -> None:
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 5))  # (N, C, H, W)
    _fused_and_composed(nn.Conv2d(2, 3, 3, padding=1, activation=name, dtype=np.float64), x,
                        name, device)


@pytest.mark.parametrize("name", NAMES)
def test_node_keeps_what_the_registry_says(name: str) -> None:
    """relu, tanh, sigmoid keep the output; gelu, softplus the biased input (the pre-activation)."""
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w, b = Tensor(rng.standard_normal((4, 5))), Tensor(rng.standard_normal(5))
    out = F.linear(x, w, b, activation=name)
    kept = out._ctx.saved[-1]
    pre = x.numpy() @ w.numpy() + b.numpy()
    want = out.numpy() if ACTIVATIONS[name].keeps == "output" else pre
    np.testing.assert_allclose(kept, want, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_keras_layers_take_every_activation(name: str) -> None:
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation=name),
                              keras.layers.Activation(name)])
    dense = model.predict(x)
    linear = model.layers[0].linear
    pre = x @ linear.weight.numpy() + linear.bias.numpy()
    once = getattr(Tensor(pre), name)().numpy()
    np.testing.assert_allclose(dense, getattr(Tensor(once), name)().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_an_unknown_activation_names_every_choice() -> None:
    choices = ", ".join(repr(n) for n in NAMES)
    makers = {
        "Linear": lambda: nn.Linear(2, 3, activation="swish"),
        "linear": lambda: F.linear(Tensor(np.ones((1, 2))), Tensor(np.ones((2, 3))),
                                   activation="swish"),
        "Conv2d": lambda: nn.Conv2d(1, 1, 1, activation="swish"),
        "conv2d": lambda: F.conv2d(Tensor(np.ones((1, 1, 2, 2))), Tensor(np.ones((1, 1, 1, 1))),
                                   activation="swish"),
    }
    for caller, make in makers.items():
        with pytest.raises(ValueError, match=rf"^{caller}: unknown activation 'swish'; choose "
                                             rf"from None, {choices}$"):
            make()
    for layer in (lambda: keras.layers.Dense(3, activation="swish"),
                  lambda: keras.layers.Activation("swish")):
        with pytest.raises(ValueError, match=rf"choose from None, 'linear', 'softmax', {choices}$"):
            layer()
