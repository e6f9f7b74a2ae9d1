"""Keras layers against PyTorch (same weights, Keras' layouts), their shape inference, losses and
optimizers by name, and the training features of the Keras front: callbacks (the loop's and
Keras-style ones), metrics from tinygrad_lab.metrics, regularizers, class_weight, whole-model
save / load_model, summary's counts and memory, History.plot."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import keras
from tinygrad_lab.tensor import Tensor

try:
    import torch
except ImportError:  # CI without the local torch wheel: the comparisons with torch skip
    torch = None

L = keras.layers
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))


def _np(layer_out: Tensor) -> np.ndarray:
    return layer_out.numpy().astype(np.float64)


def _tf_same(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


# --- layers against torch ----------------------------------------------------------------------
@needs_torch
@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), k=st.integers(1, 4), s=st.integers(1, 3),
       padding=st.sampled_from(["valid", "same"]), filters=st.integers(1, 3))
def test_conv2d_matches_torch_and_its_shape_inference(h, w, k, s, padding, filters):
    assume(padding == "same" or (h >= k and w >= k))
    tl.manual_seed(0)
    x = np.random.default_rng(h * 31 + w).standard_normal((2, h, w, 3)).astype(np.float32)
    conv = L.Conv2D(filters, k, strides=s, padding=padding, activation="relu")
    y = conv(Tensor(x))
    assert y.shape[1:] == conv.compute_output_shape((h, w, 3))
    xt = _t(x).permute(0, 3, 1, 2)
    if padding == "same":
        (t, b), (left, r) = _tf_same(h, k, s), _tf_same(w, k, s)
        xt = torch.nn.functional.pad(xt, (left, r, t, b))
    ref = torch.relu(torch.nn.functional.conv2d(xt, _t(conv.conv.weight.numpy()),
                                                _t(conv.conv.bias.numpy()), stride=s))
    np.testing.assert_allclose(_np(y), ref.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-5)


@needs_torch
def test_layer_gradients_match_torch():
    """Backward through the channels-last moves, the asymmetric 'same' padding, the attention
    heads and the recurrence: input gradients of sum(output * r) against torch's."""
    tl.manual_seed(0)
    rng = np.random.default_rng(9)
    conv = L.Conv2D(3, 4, strides=2, padding="same")
    img = rng.standard_normal((2, 5, 6, 2)).astype(np.float32)

    def conv_ref(x):
        xt = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (1, 1, 1, 2))
        return torch.nn.functional.conv2d(xt, _t(conv.conv.weight.numpy()),
                                          _t(conv.conv.bias.numpy()), stride=2).permute(0, 2, 3, 1)

    mha = L.MultiHeadAttention(2, 3)
    seq = rng.standard_normal((2, 4, 6)).astype(np.float32)
    mha(Tensor(seq))

    def mha_ref(x):
        b, t, _ = x.shape

        def heads(dense, z):
            w, bias = _t(dense.weight.numpy()), _t(dense.bias.numpy())
            return (z @ w + bias).reshape(b, t, 2, 3).permute(0, 2, 1, 3)

        q, k, v = heads(mha.query_dense, x), heads(mha.key_dense, x), heads(mha.value_dense, x)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(3), -1) @ v
        merged = att.permute(0, 2, 1, 3).reshape(b, t, 6)
        return merged @ _t(mha.output_dense.weight.numpy()) + _t(mha.output_dense.bias.numpy())

    lstm = L.LSTM(3, return_sequences=True)
    lstm(Tensor(seq))
    ref_lstm = torch.nn.LSTM(6, 3, batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            value = getattr(lstm.rnn, name).numpy()
            getattr(ref_lstm, name).copy_(_t(value.T if value.ndim == 2 else value))

    for layer, x, ref in ((conv, img, conv_ref), (mha, seq, mha_ref),
                          (lstm, seq, lambda z: ref_lstm(z)[0])):
        xt = Tensor(x, requires_grad=True)
        out = layer(xt)
        r = rng.standard_normal(out.shape).astype(np.float32)
        (out * Tensor(r)).sum().backward()
        x_ref = _t(x).requires_grad_(True)
        (ref(x_ref) * _t(r)).sum().backward()
        np.testing.assert_allclose(xt.grad.numpy(), x_ref.grad.numpy(), rtol=1e-4, atol=1e-5)


@needs_torch
@pytest.mark.parametrize("pool, ref", [(L.MaxPooling2D, "max_pool2d"),
                                       (L.AveragePooling2D, "avg_pool2d")])
@pytest.mark.parametrize("size, strides", [((2, 2), None), ((3, 2), (1, 2)), (2, 1)])
def test_pooling_matches_torch(pool, ref, size, strides):
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
    layer = pool(size, strides)
    y = layer(Tensor(x))
    assert y.shape[1:] == layer.compute_output_shape((7, 6, 3))
    k = size if isinstance(size, tuple) else (size, size)
    pooled = getattr(torch.nn.functional, ref)(_t(x).permute(0, 3, 1, 2), k, strides or k)
    expected = pooled.permute(0, 2, 3, 1)
    np.testing.assert_allclose(_np(y), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_max_pooling_same_pads_evenly_or_refuses():
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 2)).astype(np.float32)
    layer = L.MaxPooling2D(3, strides=1, padding="same")
    assert layer(Tensor(x)).shape == (1, 5, 5, 2)
    with pytest.raises(ValueError, match="unevenly"):
        L.MaxPooling2D(2, strides=1, padding="same")(Tensor(x))
    with pytest.raises(ValueError, match="padding"):
        L.AveragePooling2D(2, padding="same")


@needs_torch
def test_batch_normalization_channels_last_with_keras_momentum():
    x = np.random.default_rng(1).standard_normal((8, 3, 4, 5)).astype(np.float32) * 2 + 1
    bn = L.BatchNormalization(momentum=0.9)
    y = bn(Tensor(x))  # training: the batch's statistics
    xt = _t(x).permute(0, 3, 1, 2)
    rm, rv = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    ref = torch.nn.functional.batch_norm(xt, rm, rv, training=True, momentum=0.1, eps=1e-3)
    np.testing.assert_allclose(_np(y), ref.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.numpy(), rm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), rv.numpy(), rtol=1e-5)
    bn.eval()  # inference: the moving statistics
    y = bn(Tensor(x))
    expected = (x - rm.numpy()) / np.sqrt(rv.numpy() + 1e-3)
    np.testing.assert_allclose(_np(y), expected, rtol=1e-4, atol=1e-4)


@needs_torch
def test_layer_normalization_and_global_pooling():
    x = np.random.default_rng(2).standard_normal((3, 4, 6)).astype(np.float32)
    ln = L.LayerNormalization()
    ref = torch.nn.functional.layer_norm(_t(x), (6,), eps=1e-3)
    np.testing.assert_allclose(_np(ln(Tensor(x))), ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(L.GlobalAveragePooling1D()(Tensor(x))), x.mean(1), rtol=1e-6)
    img = x.reshape(3, 2, 2, 6)
    np.testing.assert_allclose(_np(L.GlobalAveragePooling2D()(Tensor(img))), img.mean((1, 2)),
                               rtol=1e-6)


@needs_torch
@pytest.mark.parametrize("cls, torch_cls", [(L.SimpleRNN, "RNN"), (L.LSTM, "LSTM"),
                                            (L.GRU, "GRU")])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_layers_match_torch(cls, torch_cls, return_sequences):
    tl.manual_seed(0)
    x = np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32)  # (B, T, F)
    layer = cls(4, return_sequences=return_sequences)
    y = layer(Tensor(x))
    assert y.shape[1:] == layer.compute_output_shape((5, 3))
    ref = getattr(torch.nn, torch_cls)(3, 4, batch_first=True).double()
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            value = getattr(layer.rnn, name).numpy()
            getattr(ref, name).copy_(_t(value.T if value.ndim == 2 else value))
        out, _ = ref(_t(x))
    expected = out if return_sequences else out[:, -1]
    np.testing.assert_allclose(_np(y), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_lstm_initialises_like_keras():
    tl.manual_seed(0)
    layer = L.LSTM(3)
    layer(Tensor(np.zeros((1, 2, 4), np.float32)))
    bias = layer.rnn.bias_ih_l0.numpy()
    np.testing.assert_array_equal(bias, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])  # forget gate 1
    block = layer.rnn.weight_hh_l0.numpy()[:, :3]  # orthogonal recurrent kernel per gate
    np.testing.assert_allclose(block.T @ block, np.eye(3), atol=1e-5)


@needs_torch
@pytest.mark.parametrize("masking", ["none", "causal", "mask"])
def test_multi_head_attention_matches_torch(masking):
    tl.manual_seed(0)
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2, 4, 8)).astype(np.float32)  # (B, T, Eq)
    v = rng.standard_normal((2, 4, 5)).astype(np.float32)  # (B, S, Ev)
    k = rng.standard_normal((2, 4, 6)).astype(np.float32)  # (B, S, Ek)
    mha = L.MultiHeadAttention(num_heads=2, key_dim=4)
    keep = rng.random((2, 4, 4)) < 0.6  # (B, T, S), True = attend
    keep[:, :, 0] = True  # every query sees a key
    out, scores = mha(Tensor(q), Tensor(v), Tensor(k), return_attention_scores=True,
                      use_causal_mask=masking == "causal",
                      attention_mask=keep if masking == "mask" else None)
    assert out.shape == (2, 4, 8) and scores.shape == (2, 2, 4, 4)
    ref = torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=5, batch_first=True).double()
    with torch.no_grad():
        ref.q_proj_weight.copy_(_t(mha.query_dense.weight.numpy().T))
        ref.k_proj_weight.copy_(_t(mha.key_dense.weight.numpy().T))
        ref.v_proj_weight.copy_(_t(mha.value_dense.weight.numpy().T))
        ref.in_proj_bias.copy_(_t(np.concatenate([mha.query_dense.bias.numpy(),
                                                  mha.key_dense.bias.numpy(),
                                                  mha.value_dense.bias.numpy()])))
        ref.out_proj.weight.copy_(_t(mha.output_dense.weight.numpy().T))
        ref.out_proj.bias.copy_(_t(mha.output_dense.bias.numpy()))
        mask = None  # torch's: True = hidden, (T, S) or (B * H, T, S)
        if masking == "causal":
            mask = torch.triu(torch.ones(4, 4, dtype=torch.bool), 1)
        elif masking == "mask":
            mask = torch.tensor(np.repeat(~keep, 2, axis=0))
        expected, weights = ref(_t(q), _t(k), _t(v), attn_mask=mask,
                                average_attn_weights=False)
    np.testing.assert_allclose(_np(out), expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(scores), weights.numpy(), rtol=1e-4, atol=1e-5)


def test_embedding_dropout_and_their_errors():
    tl.manual_seed(0)
    emb = L.Embedding(10, 3)
    ids = np.array([[1, 2], [9, 1]])
    y = emb(Tensor(ids))
    assert y.shape == (2, 2, 3) and emb.compute_output_shape((2,)) == (2, 3)
    table = emb.embeddings.numpy()
    assert np.abs(table).max() <= 0.05
    np.testing.assert_array_equal(y.numpy(), table[ids])
    with pytest.raises(IndexError):
        emb(Tensor(np.array([[10]])))
    drop = L.Dropout(0.5)
    x = Tensor(np.ones((200, 50), np.float32))
    kept = drop(x).numpy()
    assert set(np.unique(kept)) <= {0.0, 2.0} and 0.4 < (kept == 0).mean() < 0.6
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), 1.0)
    for bad in (lambda: L.Dropout(1.0), lambda: L.Dense(0), lambda: L.Conv2D(4, 0),
                lambda: L.Conv2D(4, 3, padding="full"), lambda: L.SimpleRNN(3, "sigmoid")):
        with pytest.raises(ValueError):
            bad()


# --- losses and optimizers by name --------------------------------------------------------------
@needs_torch
def test_losses_match_torch():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    onehot = np.eye(4, dtype=np.float32)[labels]
    probs = torch.softmax(_t(logits), -1)
    ce = torch.nn.functional.cross_entropy(_t(logits), torch.tensor(labels)).item()
    losses = keras.losses
    cases = [
        (losses.CategoricalCrossentropy(from_logits=True), onehot, logits, ce),
        (losses.CategoricalCrossentropy(), onehot, probs.numpy(), ce),
        (losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits, ce),
        (losses.SparseCategoricalCrossentropy(), labels, probs.numpy(), ce),
    ]
    targets = rng.integers(0, 2, (6, 4)).astype(np.float32)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(_t(logits), _t(targets)).item()
    cases += [
        (losses.BinaryCrossentropy(from_logits=True), targets, logits, bce),
        (losses.BinaryCrossentropy(), targets, torch.sigmoid(_t(logits)).numpy(), bce),
        (losses.get("mae"), targets, logits, np.abs(logits - targets).mean()),
        (losses.get("mse"), targets, logits, ((logits - targets) ** 2).mean()),
    ]
    for loss, y_true, y_pred, expected in cases:
        value = loss(y_true, Tensor(np.asarray(y_pred, np.float32))).item()
        assert np.isclose(value, expected, rtol=1e-4), type(loss).__name__
    with pytest.raises(ValueError, match="hinge"):
        losses.get("hinge")


def test_categorical_crossentropy_trains_a_softmax_model_fused():
    tl.manual_seed(0)
    x, y = _blobs(3)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.05), "categorical_crossentropy", ["accuracy"])
    onehot = np.eye(3, dtype=np.float32)[y]
    history = model.fit(x, onehot, epochs=8, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(x, onehot, verbose=0)
    probs = model.predict(x)
    expected = -np.log(probs[np.arange(len(y)), y]).mean()
    assert np.isclose(loss, expected, rtol=1e-4) and acc > 0.9


@pytest.mark.parametrize("name", ["adagrad", "sgd", "rmsprop", "adam", "adamw"])
def test_optimizers_by_name_train(name):
    tl.manual_seed(0)
    x, y = _blobs(2)
    model = keras.Sequential([keras.Input((4,)), L.Dense(2, activation="softmax")])
    model.compile(name, "sparse_categorical_crossentropy")
    assert type(model.optimizer).__name__.lower() == name
    before = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0)[0] < before


# --- training features ----------------------------------------------------------------------------
def _blobs(classes: int = 2, n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, 4)) * 3
    return (centres[y] + rng.standard_normal((n, 4))).astype(np.float32), y.astype(np.int64)


def _mlp(lr: float = 0.01, **dense: object) -> keras.Sequential:
    return keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu", **dense),
                             L.Dense(2, activation="softmax")])


def test_fit_with_early_stopping_and_classification_metrics():
    from tinygrad_lab import metrics as tl_metrics

    tl.manual_seed(0)
    x, y = _blobs()
    model = _mlp()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy", "precision", "recall", "f1"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1,
                                         restore_best_weights=True)
    history = model.fit(x, y, epochs=40, batch_size=16, validation_split=0.25,
                        callbacks=[stop], verbose=0)
    h = history.history
    for key in ("accuracy", "precision", "recall", "f1"):
        assert len(h[key]) == len(h[f"val_{key}"]) == len(history.epoch)
        assert all(0 <= v <= 1 for v in h[key])
    best = int(np.argmin(h["val_loss"]))
    val_loss, acc, precision, recall, f1 = model.evaluate(x[180:], y[180:], verbose=0)
    assert np.isclose(val_loss, h["val_loss"][best], rtol=1e-5)  # the best weights are back
    probs = model.predict(x[180:])
    assert np.isclose(precision, tl_metrics.precision(y[180:], probs, average="macro"))
    assert np.isclose(recall, tl_metrics.recall(y[180:], probs, average="macro"))
    assert np.isclose(f1, tl_metrics.f1(y[180:], probs, average="macro"))
    assert acc > 0.9


def test_keras_style_callback_sees_the_model_and_stops_it():
    seen: list[tuple[int, float]] = []

    class StopAtTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, self.model.optimizer.lr))
            if epoch == 1:
                self.model.stop_training = True

    class DuckTyped:  # not a subclass: Keras' hooks it has are called, with set_model
        def set_model(self, model):
            self.model = model

        def on_train_end(self, logs=None):
            self.ended = self.model.stop_training

    duck = DuckTyped()
    x, y = _blobs()
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=10, verbose=0, callbacks=[StopAtTwo(), duck])
    assert history.epoch == [0, 1] and [e for e, _ in seen] == [0, 1]
    assert duck.ended is True


def test_regularizers_add_to_the_loss_and_shrink_weights():
    tl.manual_seed(0)
    x, y = _blobs()
    reg = keras.regularizers.l1_l2(l1=0.01, l2=0.1)
    model = _mlp(kernel_regularizer=reg, bias_regularizer=keras.regularizers.l2(0.5))
    model.compile("adam", "sparse_categorical_crossentropy")
    dense = model.layers[0].linear
    penalty = (0.01 * np.abs(dense.weight.numpy()).sum() + 0.1 * (dense.weight.numpy() ** 2).sum()
               + 0.5 * (dense.bias.numpy() ** 2).sum())
    probs = model.predict(x)
    data_loss = -np.log(probs[np.arange(len(y)), y]).mean()
    assert np.isclose(model.evaluate(x, y, verbose=0)[0], data_loss + penalty, rtol=1e-4)
    norms = []
    for r in (None, keras.regularizers.l2(1.0)):
        tl.manual_seed(0)
        m = _mlp(kernel_regularizer=r)
        m.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
        m.fit(x, y, epochs=3, verbose=0)
        norms.append(float((m.layers[0].linear.weight.numpy() ** 2).sum()))
    assert norms[1] < 0.5 * norms[0]


def test_class_weight_weighs_each_samples_loss():
    tl.manual_seed(0)
    x, y = _blobs()
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    before = [p.numpy().copy() for p in model.parameters()]
    model.fit(x, y, epochs=1, verbose=0, class_weight={0: 0.0, 1: 0.0})  # no gradient at all
    for p, q in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), q)
    batch = Tensor(x[:32])
    weights = model._sample_weights(y[:32], {0: 3.0})
    loss, out = model._loss(batch, y[:32], weights)
    per = -np.log(out.numpy()[np.arange(32), y[:32]])
    assert np.isclose(loss.item(), (per * np.where(y[:32] == 0, 3.0, 1.0)).mean(), rtol=1e-5)
    tl.manual_seed(0)  # sample_weight: the same weights given per sample train the same
    by_class, by_sample = _mlp(), None
    by_class.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    tl.manual_seed(1)
    by_class.fit(x, y, epochs=1, verbose=0, class_weight={0: 3.0, 1: 0.5})
    tl.manual_seed(0)
    by_sample = _mlp()
    by_sample.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    tl.manual_seed(1)
    by_sample.fit(x, y, epochs=1, verbose=0, sample_weight=np.where(y == 0, 3.0, 0.5))
    np.testing.assert_array_equal(by_sample.predict(x), by_class.predict(x))
    with pytest.raises(ValueError, match="sample_weight"):
        by_sample.fit(x, y, verbose=0, sample_weight=np.ones(3))
    tl.manual_seed(0)
    favoured = _mlp()  # class 1 worth 50 times class 0: every sample gets called 1
    favoured.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    favoured.fit(x, y, epochs=3, verbose=0, class_weight={0: 0.02, 1: 1.0})
    assert (favoured.predict(x).argmax(1) == 1).mean() > (y == 1).mean() + 0.05


def _conv_model() -> keras.Sequential:
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        L.Conv2D(3, 3, padding="same", activation="relu",
                 kernel_regularizer=keras.regularizers.l2(1e-3)),
        L.BatchNormalization(),
        L.MaxPooling2D(2),
        L.Dropout(0.1),
        L.Flatten(),
        L.Dense(4, activation="tanh"),
        L.Dense(2, activation="softmax"),
    ])


def test_save_and_load_model_round_trip_continues_training(tmp_path):
    tl.manual_seed(0)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 6, 6, 2)).astype(np.float32)
    y = (x[..., 0].mean((1, 2)) > 0).astype(np.int64)
    model = _conv_model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  ["accuracy", "recall"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    assert os.listdir(tmp_path) == ["model.keras"]
    loaded = keras.models.load_model(path)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.metrics == ["accuracy", "recall"]
    for a, b in zip(model.optimizer.params, loaded.optimizer.params):  # Adam's moments too
        sa, sb = model.optimizer.state[id(a)], loaded.optimizer.state[id(b)]
        assert sa["step"] == sb["step"]
        np.testing.assert_array_equal(sa["m"], sb["m"])
    for m in (model, loaded):  # one more epoch on each, from the same seed: the same weights
        tl.manual_seed(3)
        m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.save_weights(str(tmp_path / "weights.safetensors"))
    with pytest.raises(ValueError, match="not a model"):
        keras.models.load_model(tmp_path / "weights.safetensors")


def test_failed_model_save_keeps_the_old_file(tmp_path, monkeypatch):
    import safetensors.numpy

    model = _conv_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    path = tmp_path / "model.keras"
    model.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.keras"]


def test_sequence_models_build_train_and_round_trip(tmp_path):
    tl.manual_seed(0)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 12, (48, 5))
    y = (ids.mean(1) > 5.5).astype(np.int64)
    model = keras.Sequential([
        keras.Input((5,)),
        L.Embedding(12, 6, embeddings_regularizer="l2"),
        L.GRU(8, return_sequences=True),
        L.MultiHeadAttention(2, 3),
        L.LayerNormalization(),
        L.LSTM(4, return_sequences=True, recurrent_regularizer=keras.regularizers.l1(1e-3)),
        L.SimpleRNN(4, return_sequences=True),
        L.GlobalAveragePooling1D(),
        L.Dense(2),
    ])
    model.compile("rmsprop", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  ["accuracy"])
    assert model.output_shape == (2,)
    history = model.fit(ids, y, epochs=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 2
    model.save(tmp_path / "seq.keras")
    loaded = keras.models.load_model(tmp_path / "seq.keras")
    np.testing.assert_allclose(loaded.predict(ids), model.predict(ids), rtol=1e-6)
    assert loaded.layers[0].embeddings_regularizer.l2 == 0.01


def test_summary_counts_trainable_and_non_trainable_and_memory():
    model = _conv_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    text = model.summary(print_fn=lambda s: None)
    conv = 3 * 3 * 2 * 3 + 3
    trainable = conv + 2 * 3 + (27 * 4 + 4) + (4 * 2 + 2)
    assert f"Trainable params: {trainable:,}" in text
    assert "Non-trainable params: 6" in text  # BatchNormalization's moving mean and variance
    assert f"Total params: {trainable + 6:,}" in text
    assert "conv2d" in text and "(None, 6, 6, 3)" in text and "(None, 3, 3, 3)" in text
    dense_row = [row for row in text.splitlines() if "(None, 4)" in row][0]
    # 112 weights: (weights + gradients + Adam's 2 moments) x 4 B, + 4 outputs x 4 B = 1,808 B
    assert dense_row.split()[-2:] == ["1.8", "KB"]
    # 185 trainable float32 weights: 740 B, as many gradients, Adam's two moments 1,480 B
    assert ("Memory of one training step (batch 1): parameters 740 B, gradients 740 B, "
            "optimizer state 1.4 KB") in text
    assert "Activations saved for backward:" in text and "per sample" in text


def test_verbose_modes_and_history_plot(tmp_path, capsys):
    x, y = _blobs()
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], device="cpu")
    model.fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
    history = model.fit(x, y, epochs=2, verbose=2, validation_split=0.2)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and out.count("val_accuracy") == 2
    written = history.plot(tmp_path / "curves.png")
    assert os.path.getsize(written) > 1000


def test_mnist_load_data_is_the_shipped_copy():
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and set(np.unique(y_test)) == set(range(10))


def test_frozen_layers_keep_their_weights_and_count_as_non_trainable():
    tl.manual_seed(0)
    x, y = _blobs()
    model = _mlp()
    model.layers[0].trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    frozen = [p.numpy().copy() for p in model.layers[0].parameters()]
    head = [p.numpy().copy() for p in model.layers[1].parameters()]
    model.fit(x, y, epochs=1, verbose=0)
    for p, q in zip(model.layers[0].parameters(), frozen):
        np.testing.assert_array_equal(p.numpy(), q)
    assert any(not np.array_equal(p.numpy(), q) for p, q in zip(model.layers[1].parameters(), head))
    text = model.summary(print_fn=lambda s: None)
    assert "Trainable params: 18" in text and "Non-trainable params: 40" in text


def test_binary_classification_with_sigmoid_and_auc():
    tl.manual_seed(0)
    x, y = _blobs()
    model = keras.Sequential([keras.Input((4,)), L.Dense(8, activation="relu"),
                              L.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy",
                  ["accuracy", "auc", keras.metrics.Precision()])
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9 and history.history["auc"][-1] > 0.9
    loss, acc, auc, precision = model.evaluate(x, y.astype(np.float32), verbose=0)
    p = model.predict(x).ravel().astype(np.float64)
    bce = -(y * np.log(np.clip(p, 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-7, 1))).mean()
    assert np.isclose(loss, bce, rtol=1e-4) and np.isclose(acc, ((p > 0.5) == y).mean())
    assert np.isclose(precision, y[p > 0.5].mean())


def test_loss_function_weights_and_summary_leave_the_model_alone(tmp_path):
    tl.manual_seed(0)
    x, y = _blobs()

    def squared_hinge_like(y_true, y_pred):  # a Keras-style loss function, per sample
        return (y_pred[:, 1] - y_true * 2 + 1).square()

    model = keras.Sequential([keras.Input((4,)), L.Dense(2), L.BatchNormalization()])
    model.compile("sgd", squared_hinge_like)
    history = model.fit(x, y, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 2), (2,), (2,), (2,), (2,), (2,)]
    model.summary(print_fn=lambda s: None)  # its probes run a training step's forward
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    other = keras.Sequential([keras.Input((4,)), L.Dense(2), L.BatchNormalization()])
    other.set_weights(weights)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    assert model.get_layer(model.layers[1].name) is model.layers[1]
    with pytest.raises(ValueError, match="function"):
        model.save(tmp_path / "m.keras")


def test_load_model_restores_a_bound_optimizer_and_its_learning_rate(tmp_path):
    from tinygrad_lab import optim

    tl.manual_seed(0)
    x, y = _blobs()
    model = _mlp()
    model.build((4,))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    opt.lr = 0.01  # as a scheduler would leave it
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is optim.SGD
    assert loaded.optimizer.lr == 0.01
    for m in (model, loaded):  # the same steps: momentum 0.9 and its buffers came along
        tl.manual_seed(5)
        m.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("kind", ["conv", "sequence"])
def test_device_in_compile_trains_there_and_matches_the_cpu(kind, tmp_path):
    """device="standin" (a non-CPU device holding NumPy arrays, see testing/standin.py): the
    model, its batches and its evaluation move there, no host array leaks into the maths, and
    the run equals the CPU reference's bit for bit."""
    from tinygrad_lab.testing import standin

    standin.register()
    rng = np.random.default_rng(8)
    if kind == "conv":
        x = rng.standard_normal((48, 6, 6, 2)).astype(np.float32)
        y = (x[..., 0].mean((1, 2)) > 0).astype(np.int64)
        build, loss = _conv_model, "sparse_categorical_crossentropy"
    else:
        x = rng.integers(0, 12, (48, 5))
        y = (x.mean(1) > 5.5).astype(np.int64)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def build() -> keras.Sequential:
            return keras.Sequential([keras.Input((5,)), L.Embedding(12, 6),
                                     L.GRU(8, return_sequences=True), L.MultiHeadAttention(2, 3),
                                     L.LayerNormalization(), L.LSTM(4), L.Dense(2)])
    results = []
    for device in ("cpu", "standin"):
        tl.manual_seed(0)
        with tl.reference():
            model = build()
            model.compile("adam", loss, ["accuracy", "precision"], device=device)
            history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, class_weight={0: 2.0},
                                validation_split=0.25)
            assert model.parameters()[0].device.startswith(device)
            del history.history["samples_per_second"]  # a timing
            results.append((history.history, model.predict(x)))
            model.save(tmp_path / f"{device}.keras")
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    with tl.reference():
        loaded = keras.models.load_model(tmp_path / "standin.keras")
        np.testing.assert_array_equal(loaded.predict(x), results[1][1])


@pytest.mark.parametrize("loss, activation, units", [
    ("sparse_categorical_crossentropy", "sigmoid", 2), ("categorical_crossentropy", "softmax", 2),
    ("categorical_crossentropy", None, 2), ("binary_crossentropy", "sigmoid", 1),
    (keras.losses.BinaryCrossentropy(from_logits=True), None, 1), ("mae", None, 1)])
def test_every_loss_path_runs_on_a_non_cpu_device_as_on_the_cpu(loss, activation, units):
    from tinygrad_lab.testing import standin

    standin.register()
    x, y = _blobs(n=40)
    target = np.eye(2, dtype=np.float32)[y] if units == 2 and "sparse" not in str(loss) else y
    results = []
    for device in ("cpu", "standin"):
        tl.manual_seed(0)
        with tl.reference():
            model = keras.Sequential([keras.Input((4,)), L.Dense(units, activation=activation,
                                                                 kernel_regularizer="l1")])
            model.compile("adam", loss, ["accuracy"], device=device)
            model.fit(x, target, epochs=1, batch_size=8, verbose=0, class_weight={0: 2.0})
            results.append(model.predict(x))
    np.testing.assert_array_equal(*results)
    layer = L.MultiHeadAttention(2, 2)  # a layer used on its own builds where its input is
    out = layer(Tensor(np.ones((2, 3, 4), np.float32), device="standin"), use_causal_mask=True)
    assert out.device.startswith("standin") and layer.query_dense.weight.device == out.device


def test_the_loops_callbacks_run_in_keras_fit(tmp_path):
    import csv

    from tinygrad_lab.serialization import load_checkpoint

    tl.manual_seed(0)
    x, y = _blobs()
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"])
    cbs = keras.callbacks
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0, callbacks=[
        cbs.ModelCheckpoint(tmp_path / "best.safetensors", save_best_only=True),
        cbs.CSVLogger(tmp_path / "log.csv"),
        cbs.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1)),
        cbs.TerminateOnNaN()])
    assert len(history.epoch) == 3
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {"loss", "accuracy", "val_loss"} <= set(rows[0])
    assert np.isclose(model.optimizer.lr, 0.1 / 3)
    state, _ = load_checkpoint(tmp_path / "best.safetensors")
    assert set(state) == set(model.state_dict())
