"""The Keras-style front: lazy building, summary, compile errors, fit / evaluate / predict on small
synthetic problems, the NaN guard, and atomic save_weights / load_weights."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import keras

Dense = keras.layers.Dense


def blobs(n: int = 512, features: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs at -1.5 and +1.5 on every axis: linearly separable in practice."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = rng.standard_normal((n, features)) + np.where(y[:, None] == 1, 1.5, -1.5)
    return x.astype(np.float32), y.astype(np.int64)


def classifier(features: int = 4, lr: float = 1e-2, with_input: bool = True) -> keras.Sequential:
    layers = [Dense(16, activation="relu"), Dense(2, activation="softmax")]
    model = keras.Sequential([keras.Input((features,)), *layers] if with_input else layers)
    model.compile(
        keras.optimizers.Adam(learning_rate=lr), "sparse_categorical_crossentropy", ["accuracy"]
    )
    return model


# --- building and summary -------------------------------------------------------------------------
def test_model_builds_lazily_from_the_first_batch():
    tl.manual_seed(0)
    model = keras.Sequential([Dense(8, activation="relu"), Dense(3, activation="softmax")])
    assert not model.built
    assert model.parameters() == []
    out = model.predict(np.zeros((5, 4), np.float32))
    assert model.built and out.shape == (5, 3)
    assert model.num_parameters() == 4 * 8 + 8 + 8 * 3 + 3
    assert model.output_shape == (3,)


def test_input_builds_at_compile_and_summary_counts_params():
    model = keras.Sequential(
        [
            keras.Input((784,)),
            Dense(512, activation="relu"),
            Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    assert model.built and model.optimizer is not None
    lines: list[str] = []
    text = model.summary(print_fn=lines.append)
    assert lines == [text]
    assert f"{784 * 512 + 512:,}" in text  # 401,920
    assert f"{512 * 10 + 10:,}" in text  # 5,130
    assert f"Total params: {784 * 512 + 512 + 512 * 10 + 10:,}" in text
    assert "(None, 512)" in text and "(None, 10)" in text


def test_summary_before_build_shows_unknown_shapes():
    model = keras.Sequential([Dense(8)])
    text = model.summary(print_fn=lambda s: None)
    assert "Total params: 0" in text


def test_input_shape_mismatch_is_reported():
    model = classifier(features=4)
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        keras.Sequential([keras.Input((4,)), Dense(2)]).predict(np.zeros((3, 5)))
    assert model.predict(np.zeros((2, 4))).shape == (2, 2)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"optimizer": "adamax"}, "adamax"),
        ({"loss": "hinge"}, "hinge"),
        ({"metrics": ["f7"]}, "f7"),
    ],
)
def test_compile_rejects_unknown_names(kwargs, name):
    model = keras.Sequential([keras.Input((4,)), Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match=name):
        model.compile(**kwargs)


def test_fit_before_compile_raises():
    model = keras.Sequential([keras.Input((4,)), Dense(2)])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((4, 4)), np.zeros(4, np.int64))


# --- fit, evaluate, predict -----------------------------------------------------------------------
def test_fit_separates_blobs_with_validation_split():
    tl.manual_seed(0)
    x, y = blobs()
    model = classifier()
    history = model.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0)
    h = history.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy", "samples_per_second"}
    assert all(len(v) == 3 for v in h.values())
    assert history.epoch == [0, 1, 2]
    assert h["accuracy"][-1] > 0.95 and h["val_accuracy"][-1] > 0.95
    assert h["loss"][-1] < h["loss"][0]
    assert all(rate > 0 for rate in h["samples_per_second"])
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.95 and 0 < loss < h["loss"][0]


def test_fit_with_validation_data_and_evaluate_predict():
    tl.manual_seed(1)
    x, y = blobs(seed=1)
    xv, yv = blobs(n=128, seed=2)
    model = classifier(with_input=False)
    history = model.fit(x, y, epochs=2, batch_size=64, validation_data=(xv, yv), verbose=0)
    assert len(history.history["val_accuracy"]) == 2
    assert history.history["val_accuracy"][-1] > 0.95
    result = model.evaluate(xv, yv, verbose=0)
    assert isinstance(result, list) and len(result) == 2
    assert np.isclose(result[1], history.history["val_accuracy"][-1])
    assert np.isclose(result[0], history.history["val_loss"][-1], rtol=1e-5)
    logs = model.evaluate(xv, yv, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    probs = model.predict(xv, batch_size=50)  # several batches, the last one short
    assert probs.shape == (128, 2)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(1) == yv).mean() > 0.95


def test_fit_verbose_prints_one_line_per_epoch(capsys):
    x, y = blobs(n=64)
    classifier().fit(x, y, epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert out.count("samples/s") == 2


def test_float_labels_that_are_whole_numbers_are_accepted():
    x, y = blobs(n=64)
    model = classifier()
    model.fit(x, y.astype(np.float32), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="integer labels"):
        model.fit(x, y + 0.5, epochs=1, verbose=0)


def test_fit_rejects_mismatched_lengths():
    model = classifier()
    with pytest.raises(ValueError) as info:
        model.fit(np.zeros((100, 4)), np.zeros(99, np.int64), verbose=0)
    assert "100" in str(info.value) and "99" in str(info.value)
    with pytest.raises(ValueError, match="100"):
        model.evaluate(np.zeros((100, 4)), np.zeros(99, np.int64), verbose=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_raises_with_epoch_and_step():
    x, y = blobs(n=128)
    x[40, 0] = np.inf  # in the second batch of 32
    model = classifier()
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 2\b"):
        model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_regression_raises_floating_point_error():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32) * 100
    y = x.sum(1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=1e6), "mse")
    with pytest.raises(FloatingPointError) as info:
        model.fit(x, y, epochs=50, batch_size=16, verbose=0)
    assert re.search(r"epoch \d+, step \d+", str(info.value))


def test_mse_regression():
    tl.manual_seed(0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((256, 3)).astype(np.float32)
    w = np.array([[1.5], [-2.0], [0.5]], np.float32)
    y = (x @ w + 0.3).ravel()  # (N,) targets for an (N, 1) output
    model = keras.Sequential([keras.Input((3,)), Dense(1)])
    model.compile(keras.optimizers.Adam(learning_rate=0.1), "mse", ["mae", "mse"])
    history = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.01 * history.history["loss"][0]
    loss, mae, mse = model.evaluate(x, y, verbose=0)
    assert loss < 1e-2 and mae < 0.1
    assert np.isclose(loss, mse, rtol=1e-4)
    pred = model.predict(x)
    assert pred.shape == (256, 1)
    np.testing.assert_allclose(loss, ((pred.ravel() - y) ** 2).mean(), rtol=1e-4)


# --- weights on disk -----------------------------------------------------------------------------
def test_save_and_load_weights_round_trip(tmp_path):
    tl.manual_seed(0)
    x, y = blobs(n=64)
    model = classifier()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "weights.npz"
    model.save_weights(str(path))
    assert os.listdir(tmp_path) == ["weights.npz"]
    tl.manual_seed(1)
    other = classifier()
    assert not np.allclose(other.predict(x), model.predict(x))
    other.load_weights(str(path))
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_load_weights_into_a_different_model_fails(tmp_path):
    path = tmp_path / "weights.npz"
    classifier().save_weights(str(path))
    with pytest.raises(ValueError, match=r"\(4, 16\)"):
        keras.Sequential([keras.Input((5,)), Dense(16), Dense(2)]).load_weights(str(path))
    with pytest.raises(RuntimeError, match="build"):
        keras.Sequential([Dense(16), Dense(2)]).load_weights(str(path))


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.npz"
    model = classifier()
    model.save_weights(str(path))
    before = path.read_bytes()

    def broken_write(file, *args, **kwargs):  # each array of the .npz is written by this
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken_write)
    tl.manual_seed(7)
    changed = classifier()
    with pytest.raises(OSError, match="disk full"):
        changed.save_weights(str(path))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["weights.npz"]  # no temp file left behind
    monkeypatch.undo()
    fresh = classifier()
    fresh.load_weights(str(path))
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_saved_file_has_the_usual_permissions(tmp_path):
    path = tmp_path / "weights.npz"
    tl.save({"w": np.ones(3)}, path)
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_load_rejects_files_that_are_not_checkpoints(tmp_path):
    lone = tmp_path / "lone.npz"
    with open(lone, "wb") as f:
        np.save(f, np.zeros(3))  # an .npy array under an .npz name
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    for path in (lone, garbage, empty):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            tl.load(path)
    with pytest.raises(FileNotFoundError):
        tl.load(tmp_path / "missing.npz")


def test_accuracy_of_per_time_step_labels_is_a_fraction():
    """Dense on (B, T, F) with (B, T) labels: accuracy averages over time steps too."""
    tl.manual_seed(0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 5, 3)).astype(np.float32)
    y = (x[..., 0] > 0).astype(np.int64)  # (64, 5)
    model = keras.Sequential([keras.Input((5, 3)), Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    assert all(0 <= a <= 1 for a in history.history["accuracy"])
    loss, accuracy = model.evaluate(x, y, verbose=0)
    probs = model.predict(x)
    assert probs.shape == (64, 5, 2)
    assert np.isclose(accuracy, (probs.argmax(-1) == y).mean())
    assert accuracy > 0.9


# --- empty data and bad labels: clear errors or the right empty shape, never made-up figures ----
def test_validation_split_that_leaves_no_validation_rows_raises():
    x, y = blobs(3)
    with pytest.raises(ValueError, match="validation_split=0.2 of 3 samples"):
        classifier().fit(x, y, validation_split=0.2, verbose=0)


def test_fit_on_no_samples_raises():
    x, y = blobs(8)
    with pytest.raises(ValueError, match="fit: x holds no samples"):
        classifier().fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ValueError, match="fit: validation_data holds no samples"):
        classifier().fit(x, y, validation_data=(x[:0], y[:0]), verbose=0)


def test_evaluate_on_no_samples_raises():
    x, y = blobs(8)
    with pytest.raises(ValueError, match="evaluate: x holds no samples"):
        classifier().evaluate(x[:0], y[:0], verbose=0)


def test_predict_on_no_samples_returns_the_empty_output_shape():
    x, _ = blobs(8)
    probs = classifier().predict(x[:0])
    assert probs.shape == (0, 2) and probs.dtype == np.float32
    unbuilt = keras.Sequential([Dense(5), keras.layers.Activation("softmax")])
    assert unbuilt.predict(np.zeros((0, 7), np.float32)).shape == (0, 5)


@pytest.mark.parametrize("batch_size", [0, -5])
def test_evaluate_and_predict_reject_batch_sizes_below_one(batch_size):
    x, y = blobs(8)
    model = classifier()
    with pytest.raises(ValueError, match=f"predict: batch_size must be >= 1, got {batch_size}"):
        model.predict(x, batch_size=batch_size)
    with pytest.raises(ValueError, match=f"evaluate: batch_size must be >= 1, got {batch_size}"):
        model.evaluate(x, y, batch_size=batch_size, verbose=0)


@pytest.mark.parametrize("activation", ["relu", None, "softmax"])
@pytest.mark.parametrize("label", [-1, 2])
def test_out_of_range_labels_raise_on_every_loss_path(activation, label):
    """A non-softmax last layer takes the probability path: -1 must not train the last class."""
    x, y = blobs(8)
    model = keras.Sequential([keras.Input((4,)), Dense(2, activation=activation)])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    before = [p.numpy().copy() for p in model.parameters()]
    bad = y.copy()
    bad[3] = label
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        model.fit(x, bad, verbose=0)
    for p, q in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), q)  # raised before any step
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        model.evaluate(x, bad, verbose=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        model.fit(x, y, validation_data=(x, bad), verbose=0)


# --- Keras' names for losses, optimizers and metrics ----------------------------------------------
@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy",
                                  "binary_crossentropy", "mse", "mae"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop", "adagrad"])
def test_compile_takes_every_loss_and_optimizer_name(loss, optimizer):
    model = keras.Sequential([keras.Input((4,)), Dense(2, activation="softmax")])
    model.compile(optimizer, loss)
    assert type(model.optimizer).__name__.lower() == optimizer
    x, y = blobs(n=32)
    targets = y if loss == "sparse_categorical_crossentropy" else np.eye(2, dtype=np.float32)[y]
    history = model.fit(x, targets, epochs=1, batch_size=None, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.history is history


def test_classification_metrics_are_logged_for_training_and_validation():
    tl.manual_seed(0)
    x, y = blobs()
    model = keras.Sequential([keras.Input((4,)), Dense(16, activation="relu"),
                              Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy", "precision", "recall", "f1", "auc"])
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    assert list(history.history) == [
        "loss", "accuracy", "precision", "recall", "f1", "auc", "val_loss", "val_accuracy",
        "val_precision", "val_recall", "val_f1", "val_auc", "samples_per_second"]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "accuracy", "precision", "recall", "f1", "auc"]
    assert all(0.9 < logs[k] <= 1 for k in ("accuracy", "precision", "recall", "f1", "auc"))
