"""Keras' metrics: tinygrad_lab.metrics under Keras' names (`keras.metrics.Precision()`, ...)."""

from tinygrad_lab.metrics import (
    AUC,
    Accuracy,
    BinaryAccuracy,
    F1Score,
    MeanAbsoluteError,
    MeanSquaredError,
    Metric,
    Precision,
    R2Score,
    Recall,
    TopKAccuracy,
    get,
)

TopKCategoricalAccuracy = TopKAccuracy

__all__ = ["AUC", "Accuracy", "BinaryAccuracy", "F1Score", "MeanAbsoluteError",
           "MeanSquaredError", "Metric", "Precision", "R2Score", "Recall", "TopKAccuracy",
           "TopKCategoricalAccuracy", "get"]
