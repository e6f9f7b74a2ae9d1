"""Library models, each with a config dataclass naming every size knob.

Recipes (`tinygrad-lab train NAME`), benchmarks and tests build their models from here:

    from tinygrad_lab.models import GPT, GPTConfig
    model = GPT(GPTConfig(d_model=256, num_heads=8, num_layers=6))
"""

from tinygrad_lab.models.char_lstm import CharLSTM, CharLSTMConfig
from tinygrad_lab.models.cnn import CNN, CNNConfig
from tinygrad_lab.models.gpt import GPT, GPTConfig, configure_optimizers
from tinygrad_lab.models.mlp import MLP, MLPConfig, keras_mlp

__all__ = ["CNN", "GPT", "MLP", "CNNConfig", "CharLSTM", "CharLSTMConfig", "GPTConfig",
           "MLPConfig", "configure_optimizers", "keras_mlp"]
