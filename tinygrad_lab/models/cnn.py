"""A LeNet-style CNN for 28x28 images: two conv + max-pool stages, a dense layer, dropout and the
classifier; about 99 percent on MNIST.

Shape letters: B batch, C channels, H x W image size.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinygrad_lab import nn


@dataclass
class CNNConfig:
    """Every size knob. `image` is the side of the square input; each stage is a valid 3x3 (by
    default) convolution with ReLU, then a 2x2 max-pool."""

    in_channels: int = 1
    image: int = 28
    channels: tuple[int, ...] = (32, 64)
    kernel_size: int = 3
    hidden: int = 128
    classes: int = 10
    dropout: float = 0.25
    batch_norm: bool = False  # conv (no bias) -> BatchNorm2d -> ReLU in each stage

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"CNNConfig: channels must be positive, got {self.channels}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"CNNConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.feature_side() < 1:
            raise ValueError(f"CNNConfig: a {self.image}x{self.image} image shrinks to nothing "
                             f"after {len(self.channels)} conv+pool stages")

    def feature_side(self) -> int:
        """The side of the feature map after the last pool."""
        side = self.image
        for _ in self.channels:
            side = (side - self.kernel_size + 1) // 2
        return side


class CNN(nn.Sequential):
    """(B, C, H, W) -> (B, classes) logits; PyTorch's default initialisation throughout.

    A Sequential, so its parameters are named layers.<i>.weight as before it became a model.
    """

    def __init__(self, config: CNNConfig | None = None) -> None:
        c = config or CNNConfig()
        layers: list[nn.Module] = []
        previous = c.in_channels
        for width in c.channels:  # each stage: (B, previous, s, s) -> (B, width, s', s')
            if c.batch_norm:
                layers += [nn.Conv2d(previous, width, c.kernel_size, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU()]
            else:
                layers.append(nn.Conv2d(previous, width, c.kernel_size, activation="relu"))
            layers.append(nn.MaxPool2d(2))
            previous = width
        features = previous * c.feature_side() ** 2
        layers += [nn.Flatten(),  # (B, features)
                   nn.Linear(features, c.hidden, activation="relu", init="fan_in_uniform"),
                   nn.Dropout(c.dropout),  # kept at p=0 too, so parameter names never shift
                   nn.Linear(c.hidden, c.classes, init="fan_in_uniform")]
        super().__init__(*layers)
        self.config = c


__all__ = ["CNN", "CNNConfig"]
