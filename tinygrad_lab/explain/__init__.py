"""Interpretability: which inputs a prediction rests on, and where attention looks.

- attribution.py: saliency (input gradients, Simonyan et al. 2014), gradient x input,
  integrated gradients (Sundararajan et al. 2017, with its completeness check) and occlusion
  maps (Zeiler & Fergus 2014), for any model mapping a batch to class scores;
- attention.py: the attention weights of every MultiHeadAttention in a model (the GPT's blocks
  included), captured with forward hooks;
- figures.py: the pictures (matplotlib, the `plot` extra): an image beside its attribution
  maps, and a grid of attention maps by layer and head;
- commands.py: `tinygrad-lab explain mnist-cnn CKPT --index 7` and
  `tinygrad-lab explain shakespeare-gpt CKPT --prompt "ROMEO:"`.

All of it runs on the autograd engine and module hooks (tinygrad_lab/nn/hooks.py); nothing here
changes a model's weights or leaves it in another mode than it found it.
"""

from tinygrad_lab.explain.attention import attention_maps
from tinygrad_lab.explain.attribution import (
    Attribution,
    gradient_x_input,
    integrated_gradients,
    occlusion,
    saliency,
)

__all__ = [
    "Attribution",
    "attention_maps",
    "gradient_x_input",
    "integrated_gradients",
    "occlusion",
    "saliency",
]
