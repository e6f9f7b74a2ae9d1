"""tinygrad_lab.plot's training pictures: training curves from every kind of history and the
confusion matrix, checked as real images (decoded, sized, not blank), plus their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from tinygrad_lab import plot
from tinygrad_lab.train import History


def _assert_real_png(path: Path, min_side: int = 200) -> np.ndarray:
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)  # (H, W, 4) floats in [0, 1]
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side, img.shape
    assert float(img[..., :3].std()) > 0.02  # more than a blank canvas
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20  # lines, text, colours
    return img


def _history(epochs: int = 4) -> History:
    h = History()
    for e in range(epochs):
        h.epochs.append({"loss": 1.0 / (e + 1), "accuracy": 0.5 + e / 10, "val_loss": 1.2 / (e + 1),
                         "val_accuracy": 0.45 + e / 10, "seconds": 1.0,
                         "samples_per_second": 100.0})
    return h


def test_training_curves_from_a_history(tmp_path):
    path = tmp_path / "curves.png"
    out = _history().plot(path)
    assert Path(out) == path
    img = _assert_real_png(path)
    assert img.shape[1] > img.shape[0]  # two panels side by side: loss, accuracy
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary left


def test_training_curves_from_dicts_lists_and_evaluation_steps(tmp_path):
    plot.training_curves({"step": [100, 200, 300], "loss": [2.0, 1.5, 1.2],
                          "val_loss": [2.1, 1.7, 1.4]}, tmp_path / "steps.png")
    _assert_real_png(tmp_path / "steps.png")
    plot.training_curves([{"loss": 1.0, "test_loss": 1.1}, {"loss": 0.5, "test_loss": 0.7}],
                         tmp_path / "list.png")
    _assert_real_png(tmp_path / "list.png")
    one_epoch = History(epochs=[{"loss": 1.0, "val_loss": 1.0}],
                        evaluations=[{"step": 10, "val_loss": 2.0},
                                     {"step": 20, "val_loss": 1.0}])
    plot.training_curves(one_epoch, tmp_path / "evals.png")  # x axis: the evaluation steps
    _assert_real_png(tmp_path / "evals.png")

    class KerasHistory:  # the Keras front's: .history and .epoch
        history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.8]}
        epoch = [0, 1]

    plot.training_curves(KerasHistory(), tmp_path / "keras.png", keys=["loss"])
    _assert_real_png(tmp_path / "keras.png")


def test_training_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="no values for"):
        plot.training_curves(_history(), tmp_path / "x.png", keys=["f1"])
    with pytest.raises(ValueError, match="no values"):
        plot.training_curves(History(), tmp_path / "x.png")
    with pytest.raises(TypeError, match="History"):
        plot.training_curves(42, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_confusion_matrix_picture(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 50, (10, 10)) + np.diag(np.full(10, 400))
    path = plot.plot_confusion_matrix(matrix, list(range(10)), tmp_path / "cm.png")
    img = _assert_real_png(path)
    assert abs(img.shape[0] - img.shape[1]) < 0.3 * img.shape[0]  # roughly square
    fig = plot.confusion_matrix_figure(matrix / 2, ["a"] * 10, normalize=True)
    plot.save(fig, tmp_path / "norm.png")
    _assert_real_png(tmp_path / "norm.png")
    with pytest.raises(ValueError, match="square"):
        plot.confusion_matrix_figure(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels"):
        plot.confusion_matrix_figure(np.eye(3), ["a", "b"])
