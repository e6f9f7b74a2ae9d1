"""Keras layers over tinygrad_lab.nn: Keras' names, arguments, defaults and layouts (channels-last
images, batch-first sequences, kernels (in, out)), built lazily from the first input shape.

Every layer knows its output shape from its input shape (`compute_output_shape`), creates its
weights in `build`, and round-trips through `get_config` / `from_config` as plain JSON (what
`Model.save` writes). Weight penalties (`kernel_regularizer`, `bias_regularizer`, ...) are
collected by `regularization_losses()` and added to the training loss by the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygrad_lab.backends import DEFAULT_DEVICE
from tinygrad_lab.keras import regularizers as _reg
from tinygrad_lab.nn import init
from tinygrad_lab.nn.attention import masked_softmax
from tinygrad_lab.nn.conv import AvgPool2d, Conv2d, MaxPool2d, batch_norm, dropout
from tinygrad_lab.nn.embedding import embedding
from tinygrad_lab.nn.layers import Linear
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.nn.norm import LayerNorm
from tinygrad_lab.nn.recurrent import GRU as _GRU
from tinygrad_lab.nn.recurrent import LSTM as _LSTM
from tinygrad_lab.nn.recurrent import RNN as _RNN
from tinygrad_lab.ops.elementwise import check_activation
from tinygrad_lab.random import generator
from tinygrad_lab.tensor import Tensor

Shape = tuple[int, ...]
"""One sample's shape, without the batch axis (Keras shows it as (None, ...))."""

KERAS_ONLY_ACTIVATIONS = ("linear", "softmax")
"""Keras' activation strings beyond ops.elementwise.ACTIVATIONS: 'linear' is none, 'softmax' is
applied after the layer (and, on the last Dense, fused into the loss by compile)."""

_COUNTS: dict[str, int] = {}


def _auto_name(kind: str) -> str:
    """Keras' default names: dense, dense_1, dense_2, ..."""
    n = _COUNTS.get(kind, 0)
    _COUNTS[kind] = n + 1
    return kind if n == 0 else f"{kind}_{n}"


def _snake(name: str) -> str:
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return out.replace("2_d", "2d").replace("1_d", "1d").replace("_r_n_n", "_rnn").replace(
        "l_s_t_m", "lstm").replace("g_r_u", "gru")


def _activate(x: Tensor, activation: str | None) -> Tensor:
    if activation is None or activation == "linear":
        return x
    if activation == "softmax":
        return x.softmax(-1)
    return getattr(x, activation)()


def _int_pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or int(v) < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_padding(padding: str, layer: str, allowed: tuple[str, ...] = ("valid", "same")) -> str:
    if not isinstance(padding, str) or padding.lower() not in allowed:
        raise ValueError(f"{layer}: padding must be one of {allowed}, got {padding!r}")
    return padding.lower()


class Input:
    """Declares the shape of one sample (without the batch axis)."""

    def __init__(self, shape: Sequence[int], dtype: str = "float32", name: str | None = None
                 ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype, self.name = dtype, name


class Layer(Module):
    """A Keras layer: built from the input shape on first use; knows its output shape.

    Subclasses define `build_weights(input_shape)` (create parameters), `compute_output_shape`,
    `call(x)`, and list their constructor arguments in `get_config`."""

    built = False
    fuses_softmax = False  # Dense and Activation can hand the model logits instead

    def __init__(self, name: str | None = None, input_shape: Sequence[int] | None = None,
                 trainable: bool = True) -> None:
        super().__init__()
        self.name = name or _auto_name(_snake(type(self).__name__))
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.trainable = trainable

    @property
    def trainable(self) -> bool:
        """False freezes the layer's weights (no gradient, no update; non-trainable in
        `summary`), at any time, as in Keras."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for p in self.parameters():
            p.requires_grad_(self._trainable)
            p.grad = None

    # --- building ---------------------------------------------------------------------------
    def build(self, input_shape: Shape) -> Shape:
        """Create parameters for samples of `input_shape`; return the output sample shape."""
        input_shape = tuple(int(s) for s in input_shape)
        self.build_weights(input_shape)
        self.built = True
        self.built_input_shape = input_shape
        self.trainable = self._trainable  # the new weights follow the flag
        return self.compute_output_shape(input_shape)

    def build_weights(self, input_shape: Shape) -> None:
        """Create the layer's parameters (none by default)."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    # --- running ----------------------------------------------------------------------------
    def call(self, x: Tensor) -> Tensor:
        return x

    def forward(self, x: Any, logits: bool = False) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        if not self.built:
            self.build(tuple(x.shape[1:]))
            self._follow(x)
        return self.call(x)

    def _follow(self, x: Tensor) -> None:
        """Weights built lazily go where the first input is (a layer used on its own)."""
        if x.device != DEFAULT_DEVICE:
            self.to(x.device)

    def regularization_losses(self) -> list[Tensor]:
        """The penalties of this layer's weights (each a scalar Tensor)."""
        return []

    # --- config -----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        config = dict(config)
        for key, value in config.items():
            if key.endswith("_regularizer"):
                config[key] = _reg.get(value)
        return cls(**config)

    def extra_repr(self) -> str:
        return self.name


def _penalties(pairs: Sequence[tuple[_reg.Regularizer | None, Tensor | None]]) -> list[Tensor]:
    return [reg(w) for reg, w in pairs if reg is not None and w is not None]


def _kernel_and_bias_penalties(layer: Any, inner: Linear | Conv2d | None) -> list[Tensor]:
    """Dense's and Conv2D's penalties: kernel_regularizer on the inner module's weight,
    bias_regularizer on its bias (none before the layer is built)."""
    if inner is None:
        return []
    return _penalties([(layer.kernel_regularizer, inner.weight),
                       (layer.bias_regularizer, inner.bias)])


def _regularizer_config(layer: Any, *names: str) -> dict[str, Any]:
    """The named `*_regularizer` attributes as get_config entries (from_config reads them back)."""
    return {name: _reg.serialize(getattr(layer, name)) for name in names}


# --- core ------------------------------------------------------------------------------------
class Dense(Layer):
    """units outputs, act(x @ kernel + bias) on the last axis; activation None, 'linear',
    'softmax' or a name in ops.elementwise.ACTIVATIONS ('relu', 'tanh', ...), fused into the
    matmul's node."""

    fuses_softmax = True

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_activation(activation, "Dense", also=KERAS_ONLY_ACTIVATIONS)
        if isinstance(units, bool) or int(units) < 1:
            raise ValueError(f"Dense: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = None if activation == "linear" else activation
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.kernel_regularizer = _reg.get(kernel_regularizer)
        self.bias_regularizer = _reg.get(bias_regularizer)
        self.linear: Linear | None = None

    def build_weights(self, input_shape: Shape) -> None:
        inner = None if self.activation == "softmax" else self.activation
        self.linear = Linear(input_shape[-1], self.units, bias=self.use_bias, activation=inner,
                             init=self.kernel_initializer)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.units)

    def call(self, x: Tensor) -> Tensor:
        assert self.linear is not None
        return self.linear(x)

    def forward(self, x: Any, logits: bool = False) -> Tensor:
        y = super().forward(x)
        return y.softmax(-1) if self.activation == "softmax" and not logits else y

    def regularization_losses(self) -> list[Tensor]:
        return _kernel_and_bias_penalties(self, self.linear)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                **_regularizer_config(self, "kernel_regularizer", "bias_regularizer")}

    def extra_repr(self) -> str:
        return f"{self.units}, activation={self.activation!r}"


class Flatten(Layer):
    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def call(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)  # (B, ...) -> (B, prod(...))


class Activation(Layer):
    """An activation by name: 'linear', 'softmax' or a name in ops.elementwise.ACTIVATIONS."""

    fuses_softmax = True

    def __init__(self, activation: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_activation(activation, "Activation", also=KERAS_ONLY_ACTIVATIONS)
        self.activation = activation

    def forward(self, x: Any, logits: bool = False) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        self.built = True
        if self.activation == "softmax" and logits:
            return x
        return _activate(x, self.activation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


class Dropout(Layer):
    """Inverted dropout of `rate` while training, identity in evaluate / predict."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must lie in [0, 1), got {rate}")
        self.rate = float(rate)

    def call(self, x: Tensor) -> Tensor:
        return dropout(x, self.rate, self.training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


# --- convolution and pooling (channels last: (B, H, W, C)) ---------------------------------------
def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same': output ceil(size / stride); the odd pixel of padding goes last."""
    span = dilation * (kernel - 1) + 1
    total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def _conv_size(size: int, kernel: int, stride: int, padding: str, dilation: int = 1) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


class Conv2D(Layer):
    """2-D convolution of channels-last images (B, H, W, C) -> (B, H', W', filters); kernel
    stored as tinygrad_lab.nn.Conv2d's (filters, C, KH, KW), Glorot-uniform like Keras', bias 0.
    padding 'valid' or 'same' (TensorFlow's: the odd pixel of padding at the bottom / right)."""

    def __init__(self, filters: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] = (1, 1), padding: str = "valid",
                 activation: str | None = None, use_bias: bool = True,
                 dilation_rate: int | Sequence[int] = (1, 1),
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(filters, bool) or int(filters) < 1:
            raise ValueError(f"Conv2D: filters must be a positive integer, got {filters!r}")
        check_activation(activation, "Conv2D", also=KERAS_ONLY_ACTIVATIONS)
        self.filters = int(filters)
        self.kernel_size = _int_pair("Conv2D: kernel_size", kernel_size)
        self.strides = _int_pair("Conv2D: strides", strides)
        self.dilation_rate = _int_pair("Conv2D: dilation_rate", dilation_rate)
        self.padding = _check_padding(padding, "Conv2D")
        self.activation = None if activation == "linear" else activation
        self.use_bias = use_bias
        self.kernel_regularizer = _reg.get(kernel_regularizer)
        self.bias_regularizer = _reg.get(bias_regularizer)
        self.conv: Conv2d | None = None

    def _pads(self, input_shape: Shape) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.padding == "valid":
            return (0, 0), (0, 0)
        return tuple(_same_padding(input_shape[i], self.kernel_size[i], self.strides[i],  # type: ignore[return-value]
                                   self.dilation_rate[i]) for i in (0, 1))

    def build_weights(self, input_shape: Shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D expects samples (H, W, C), got {input_shape}")
        pads = self._pads(input_shape)
        symmetric = tuple(p[0] if p[0] == p[1] else 0 for p in pads)
        self._pre_pad = any(p[0] != p[1] for p in pads)
        inner = self.activation if self.activation != "softmax" else None
        c, (kh, kw) = input_shape[-1], self.kernel_size
        self.conv = Conv2d(c, self.filters, self.kernel_size, self.strides,
                           padding=(0, 0) if self._pre_pad else symmetric,
                           dilation=self.dilation_rate, bias=self.use_bias, activation=inner)
        self.conv.weight = Parameter(init.glorot_uniform(c * kh * kw, self.filters * kh * kw,
                                                         self.conv.weight.shape))
        if self.use_bias:
            self.conv.bias = Parameter(np.zeros(self.filters, np.float32))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w = (_conv_size(input_shape[i], self.kernel_size[i], self.strides[i], self.padding,
                           self.dilation_rate[i]) for i in (0, 1))
        return (h, w, self.filters)

    def call(self, x: Tensor) -> Tensor:
        assert self.conv is not None
        x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        if self._pre_pad:
            (t, b), (left, r) = self._pads(self.built_input_shape)
            x = x.pad(((0, 0), (0, 0), (t, b), (left, r)))
        y = self.conv(x).permute(0, 2, 3, 1)  # (B, F, H', W') -> (B, H', W', F)
        return y.softmax(-1) if self.activation == "softmax" else y

    def regularization_losses(self) -> list[Tensor]:
        return _kernel_and_bias_penalties(self, self.conv)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding, "activation": self.activation,
                "use_bias": self.use_bias, "dilation_rate": list(self.dilation_rate),
                **_regularizer_config(self, "kernel_regularizer", "bias_regularizer")}


class MaxPooling2D(Layer):
    """Max over pool_size windows of (B, H, W, C); strides default to pool_size; padding 'valid'
    (or 'same' when it pads evenly: then windows at the border see only real pixels)."""

    pool = MaxPool2d

    def __init__(self, pool_size: int | Sequence[int] = (2, 2),
                 strides: int | Sequence[int] | None = None, padding: str = "valid",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        kind = type(self).__name__
        self.pool_size = _int_pair(f"{kind}: pool_size", pool_size)
        self.strides = (self.pool_size if strides is None
                        else _int_pair(f"{kind}: strides", strides))
        allowed = ("valid", "same") if self.pool is MaxPool2d else ("valid",)
        self.padding = _check_padding(padding, kind, allowed)

    def build_weights(self, input_shape: Shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} expects samples (H, W, C), got "
                             f"{input_shape}")
        pads = [_same_padding(input_shape[i], self.pool_size[i], self.strides[i])
                if self.padding == "same" else (0, 0) for i in (0, 1)]
        if any(a != b for a, b in pads):
            raise ValueError(f"{type(self).__name__}: padding='same' on {input_shape[:2]} with "
                             f"pool {self.pool_size}, strides {self.strides} pads unevenly; "
                             "use padding='valid'")
        self.layer = self.pool(self.pool_size, self.strides, (pads[0][0], pads[1][0]))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w = (_conv_size(input_shape[i], self.pool_size[i], self.strides[i], self.padding)
                for i in (0, 1))
        return (h, w, input_shape[-1])

    def call(self, x: Tensor) -> Tensor:
        return self.layer(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # pooled channels-first

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class AveragePooling2D(MaxPooling2D):
    """Mean over pool_size windows of (B, H, W, C); padding 'valid'."""

    pool = AvgPool2d


class GlobalAveragePooling1D(Layer):
    """(B, T, F) -> (B, F): the mean over time."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[-1],)

    def call(self, x: Tensor) -> Tensor:
        return x.mean(1)


class GlobalAveragePooling2D(Layer):
    """(B, H, W, C) -> (B, C): the mean over the image."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[-1],)

    def call(self, x: Tensor) -> Tensor:
        return x.mean((1, 2))


# --- normalisation ---------------------------------------------------------------------------
class BatchNormalization(Layer):
    """Normalise the last axis (Keras' axis=-1) over every other axis with the batch statistics
    while training, the moving ones otherwise. Keras' momentum (0.99: moving = 0.99 moving +
    0.01 batch) and epsilon (1e-3); gamma, beta trainable, moving_mean / moving_variance not
    (non-trainable parameters in `summary`). As in PyTorch the moving variance follows the
    unbiased batch variance (Keras' the biased one: a factor n / (n - 1) apart)."""

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= momentum <= 1 or not epsilon > 0:
            raise ValueError(f"BatchNormalization: momentum must lie in [0, 1] and epsilon be "
                             f"> 0, got {momentum}, {epsilon}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)

    def build_weights(self, input_shape: Shape) -> None:
        c = input_shape[-1]
        self.gamma = Parameter(np.ones(c, np.float32))
        self.beta = Parameter(np.zeros(c, np.float32))
        self.register_buffer("moving_mean", Tensor(np.zeros(c, np.float32)))
        self.register_buffer("moving_variance", Tensor(np.ones(c, np.float32)))

    def call(self, x: Tensor) -> Tensor:
        last = x.ndim - 1
        order = (0, last, *range(1, last))  # channels to axis 1, as batch_norm wants
        back = (0, *range(2, x.ndim), 1)
        moved = x.permute(*order) if x.ndim > 2 else x
        y = batch_norm(moved, self.moving_mean, self.moving_variance, self.gamma, self.beta,
                       self.training, 1.0 - self.momentum, self.epsilon)
        return y.permute(*back) if x.ndim > 2 else y

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


class LayerNormalization(Layer):
    """Normalise each sample over its last axis; gamma 1, beta 0, Keras' epsilon 1e-3."""

    def __init__(self, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build_weights(self, input_shape: Shape) -> None:
        self.norm = LayerNorm(input_shape[-1], eps=self.epsilon)

    def call(self, x: Tensor) -> Tensor:
        return self.norm(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


# --- embeddings and recurrence ---------------------------------------------------------------
class Embedding(Layer):
    """Integer ids (B, ...) -> vectors (B, ..., output_dim); embeddings U(-0.05, 0.05) as
    Keras'. Ids outside [0, input_dim) raise IndexError."""

    def __init__(self, input_dim: int, output_dim: int, embeddings_regularizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(input_dim) < 1 or int(output_dim) < 1:
            raise ValueError(f"Embedding: input_dim and output_dim must be >= 1, got "
                             f"{input_dim}, {output_dim}")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_regularizer = _reg.get(embeddings_regularizer)

    def build_weights(self, input_shape: Shape) -> None:
        table = generator().uniform(-0.05, 0.05, (self.input_dim, self.output_dim))
        self.embeddings = Parameter(table.astype(np.float32))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.output_dim)

    def call(self, x: Tensor) -> Tensor:
        ids = x.data if x.dtype.kind in "iu" else x.data.astype(np.int64)
        return embedding(ids, self.embeddings)

    def regularization_losses(self) -> list[Tensor]:
        return _penalties([(self.embeddings_regularizer, getattr(self, "embeddings", None))])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                **_regularizer_config(self, "embeddings_regularizer")}


def _orthogonal(rows: int, cols: int) -> np.ndarray:
    """Keras' orthogonal initialiser: Q of the QR of a Gaussian matrix (signs fixed by R)."""
    a = generator().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return (q if rows >= cols else q.T).astype(np.float32)


class _Recurrent(Layer):
    """Keras' SimpleRNN / LSTM / GRU over batch-first sequences (B, T, F) -> (B, units), or
    (B, T, units) with return_sequences. Kernel Glorot-uniform, recurrent kernel orthogonal (per
    gate), biases 0 (the LSTM's forget gate 1: unit_forget_bias), as Keras initialises."""

    module: type = _RNN

    def __init__(self, units: int, return_sequences: bool = False, use_bias: bool = True,
                 kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
                 bias_regularizer: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or int(units) < 1:
            raise ValueError(f"{type(self).__name__}: units must be a positive integer, got "
                             f"{units!r}")
        self.units, self.return_sequences, self.use_bias = int(units), return_sequences, use_bias
        self.kernel_regularizer = _reg.get(kernel_regularizer)
        self.recurrent_regularizer = _reg.get(recurrent_regularizer)
        self.bias_regularizer = _reg.get(bias_regularizer)

    def _make(self, features: int) -> Any:
        return self.module(features, self.units, bias=self.use_bias, batch_first=True)

    def build_weights(self, input_shape: Shape) -> None:
        if len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} expects samples (T, F), got {input_shape}")
        rnn = self._make(input_shape[-1])
        g, h = rnn.gates, self.units
        rnn.weight_ih_l0 = Parameter(init.glorot_uniform(input_shape[-1], g * h,
                                                         (input_shape[-1], g * h)))
        rnn.weight_hh_l0 = Parameter(np.concatenate([_orthogonal(h, h) for _ in range(g)], 1))
        if self.use_bias:
            bias = np.zeros(g * h, np.float32)
            if g == 4:  # LSTM gates i, f, g, o: the forget gate starts open
                bias[h:2 * h] = 1.0
            rnn.bias_ih_l0 = Parameter(bias)
            rnn.bias_hh_l0 = Parameter(np.zeros(g * h, np.float32))
        self.rnn = rnn

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def call(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)  # (B, T, units)
        return out if self.return_sequences else out[:, -1]

    def regularization_losses(self) -> list[Tensor]:
        rnn = getattr(self, "rnn", None)
        if rnn is None:
            return []
        w_ih, w_hh, b_ih, b_hh = rnn.layer_parameters(0)
        return _penalties([(self.kernel_regularizer, w_ih), (self.recurrent_regularizer, w_hh),
                           (self.bias_regularizer, b_ih), (self.bias_regularizer, b_hh)])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units,
                "return_sequences": self.return_sequences, "use_bias": self.use_bias,
                **_regularizer_config(self, "kernel_regularizer", "recurrent_regularizer",
                                      "bias_regularizer")}


class SimpleRNN(_Recurrent):
    """h' = act(x W + h U + b), act 'tanh' (default) or 'relu'."""

    def __init__(self, units: int, activation: str = "tanh", **kwargs: Any) -> None:
        if activation not in ("tanh", "relu"):
            raise ValueError(f"SimpleRNN: activation must be 'tanh' or 'relu', got "
                             f"{activation!r}")
        super().__init__(units, **kwargs)
        self.activation = activation

    def _make(self, features: int) -> Any:
        return _RNN(features, self.units, nonlinearity=self.activation, bias=self.use_bias,
                    batch_first=True)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


class LSTM(_Recurrent):
    """Long short-term memory, Keras' gate order (i, f, c, o) and defaults."""

    module = _LSTM


class GRU(_Recurrent):
    """Gated recurrent unit with the reset gate after the recurrent matmul (Keras'
    reset_after=True, its default, which is PyTorch's formula)."""

    module = _GRU


# --- attention --------------------------------------------------------------------------------
class MultiHeadAttention(Layer):
    """Keras' MultiHeadAttention: `layer(query, value, key=None)` with query (B, T, Eq), value
    (B, S, Ev), key (B, S, Ek) (default value) -> (B, T, output_shape or Eq); per head softmax(q
    k^T / sqrt(key_dim)) v. `return_attention_scores=True` also returns the weights (B, H, T, S).
    attention_mask (B, T, S) boolean, True = attend; use_causal_mask hides later keys. In a
    Sequential it is self-attention (query = value = key = the previous layer's output)."""

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None,
                 dropout: float = 0.0, use_bias: bool = True, output_shape: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_heads) < 1 or int(key_dim) < 1:
            raise ValueError(f"MultiHeadAttention: num_heads and key_dim must be >= 1, got "
                             f"{num_heads}, {key_dim}")
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim is not None else self.key_dim
        self.dropout, self.use_bias = float(dropout), use_bias
        self.output_dim = int(output_shape) if output_shape is not None else None

    def build(self, input_shape: Shape, value_shape: Shape | None = None,
              key_shape: Shape | None = None) -> Shape:
        value_shape = value_shape or input_shape
        key_shape = key_shape or value_shape
        h, dk, dv = self.num_heads, self.key_dim, self.value_dim
        eq = input_shape[-1]
        self.query_dense = Linear(eq, h * dk, bias=self.use_bias)
        self.key_dense = Linear(key_shape[-1], h * dk, bias=self.use_bias)
        self.value_dense = Linear(value_shape[-1], h * dv, bias=self.use_bias)
        self.output_dense = Linear(h * dv, self.output_dim or eq, bias=self.use_bias)
        self.built = True
        self.built_input_shape = tuple(input_shape)
        self.trainable = self._trainable
        return self.compute_output_shape(tuple(input_shape))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.output_dim or input_shape[-1])

    def _heads(self, x: Tensor, dense: Linear, d: int) -> Tensor:
        b, t, _ = x.shape
        return dense(x).reshape(b, t, self.num_heads, d).permute(0, 2, 1, 3)  # (B, H, T, d)

    def forward(self, query: Any, value: Any = None, key: Any = None,
                attention_mask: Any = None, return_attention_scores: bool = False,
                use_causal_mask: bool = False, logits: bool = False) -> Any:
        query = query if isinstance(query, Tensor) else Tensor(np.asarray(query))
        value = query if value is None else value
        key = value if key is None else key
        for what, t in (("query", query), ("value", value), ("key", key)):
            if t.ndim != 3:
                raise ValueError(f"MultiHeadAttention: {what} must be (B, T, E), got {t.shape}")
        if not self.built:
            self.build(tuple(query.shape[1:]), tuple(value.shape[1:]), tuple(key.shape[1:]))
            self._follow(query)
        b, t, _ = query.shape
        q = self._heads(query, self.query_dense, self.key_dim)  # (B, H, T, Dk)
        k = self._heads(key, self.key_dense, self.key_dim)  # (B, H, S, Dk)
        v = self._heads(value, self.value_dense, self.value_dim)  # (B, H, S, Dv)
        mask = None
        if attention_mask is not None:
            m = np.asarray(attention_mask.numpy() if isinstance(attention_mask, Tensor)
                           else attention_mask).astype(bool)
            mask = m[:, None] if m.ndim == 3 else m  # (B, T, S) -> (B, 1, T, S)
        scores = q @ k.transpose(-1, -2)  # (B, H, T, S)
        weights = masked_softmax(scores, 1.0 / math.sqrt(self.key_dim), use_causal_mask, mask)
        attended = dropout(weights, self.dropout, self.training) @ v  # (B, H, T, Dv)
        merged = attended.permute(0, 2, 1, 3).reshape(b, t, self.num_heads * self.value_dim)
        out = self.output_dense(merged)  # (B, T, output)
        return (out, weights) if return_attention_scores else out

    call = forward

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                "output_shape": self.output_dim}


LAYERS: dict[str, type[Layer]] = {cls.__name__: cls for cls in (
    Dense, Flatten, Activation, Dropout, Conv2D, MaxPooling2D, AveragePooling2D,
    GlobalAveragePooling1D, GlobalAveragePooling2D, BatchNormalization, LayerNormalization,
    Embedding, SimpleRNN, LSTM, GRU, MultiHeadAttention)}
"""Every layer `Model.save` can write and `load_model` rebuild, by class name."""


def serialize(layer: Layer) -> dict[str, Any]:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(entry: dict[str, Any]) -> Layer:
    """A layer from `serialize`'s dict: only the classes in LAYERS (nothing is executed)."""
    cls = LAYERS.get(entry.get("class_name", ""))
    if cls is None:
        raise ValueError(f"unknown layer class {entry.get('class_name')!r}; known: "
                         f"{sorted(LAYERS)}")
    return cls.from_config(entry.get("config", {}))


__all__ = ["KERAS_ONLY_ACTIVATIONS", "LAYERS", "GRU", "LSTM", "Activation", "AveragePooling2D",
           "BatchNormalization", "Conv2D", "Dense", "Dropout", "Embedding", "Flatten",
           "GlobalAveragePooling1D", "GlobalAveragePooling2D", "Input", "Layer",
           "LayerNormalization", "MaxPooling2D", "MultiHeadAttention", "SimpleRNN",
           "deserialize", "serialize"]
