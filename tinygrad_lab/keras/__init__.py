"""A Keras-style front over tinygrad_lab: Sequential with compile / fit / evaluate / predict /
summary / save, Keras' layers, losses, optimizers, regularizers, callbacks and metrics by their
Keras names. Layers build lazily from the first input shape, as in Keras; `fit` runs
tinygrad_lab.train.fit.

    model = keras.Sequential([keras.Input((784,)),
                              keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=10)
"""

from tinygrad_lab.keras import (
    callbacks,
    datasets,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
)
from tinygrad_lab.keras.callbacks import History
from tinygrad_lab.keras.layers import (
    KERAS_ONLY_ACTIVATIONS,
    Activation,
    Dense,
    Flatten,
    Input,
    Layer,
)
from tinygrad_lab.keras.losses import MeanSquaredError, SparseCategoricalCrossentropy
from tinygrad_lab.keras.models import Model, Progbar, Sequential, load_model
from tinygrad_lab.keras.optimizers import SGD, Adam, AdamW, OptimizerSpec, RMSprop

__all__ = ["KERAS_ONLY_ACTIVATIONS", "SGD", "Activation", "Adam", "AdamW", "Dense", "Flatten",
           "History", "Input", "Layer", "MeanSquaredError", "Model", "OptimizerSpec", "Progbar",
           "RMSprop", "Sequential", "SparseCategoricalCrossentropy", "callbacks", "datasets",
           "layers", "load_model", "losses", "metrics", "models", "optimizers", "regularizers"]
