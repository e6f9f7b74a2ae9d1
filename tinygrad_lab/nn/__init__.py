"""Layers that own parameters (Module) and their stateless maths (functional)."""

from tinygrad_lab.nn import functional, init
from tinygrad_lab.nn.attention import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    TransformerBlock,
)
from tinygrad_lab.nn.conv import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    MaxPool2d,
)
from tinygrad_lab.nn.embedding import Embedding
from tinygrad_lab.nn.layers import (
    GELU,
    Flatten,
    Identity,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from tinygrad_lab.nn.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CosineSimilarity,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from tinygrad_lab.nn.module import Module, Parameter
from tinygrad_lab.nn.norm import (
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
    RMSNorm,
)
from tinygrad_lab.nn.recurrent import GRU, LSTM, RNN
from tinygrad_lab.nn.spatial import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    Conv1d,
    ConvTranspose2d,
    Upsample,
)
from tinygrad_lab.nn.torch_layout import from_torch

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CosineSimilarity",
    "CrossEntropyLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
    "SmoothL1Loss",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "Conv1d",
    "ConvTranspose2d",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "Upsample",
    "from_torch",
    "GELU",
    "GRU",
    "LSTM",
    "RNN",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "Linear",
    "MaxPool2d",
    "Module",
    "MultiHeadAttention",
    "Parameter",
    "RMSNorm",
    "ReLU",
    "RotaryEmbedding",
    "Sequential",
    "Sigmoid",
    "SinusoidalPositionalEncoding",
    "Softmax",
    "Tanh",
    "TransformerBlock",
    "functional",
    "init",
]
