"""tinygrad_lab.callbacks on train.fit, with scripted validation values: EarlyStopping (patience,
min_delta, baseline, start_from_epoch, best weights restored whether or not it stopped),
ModelCheckpoint (formatted paths, best only, every N steps, resumable bit for bit),
ReduceLROnPlateau, LearningRateScheduler, TerminateOnNaN, CSVLogger, a monitor that never
appears, and fit(metrics=[...])."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sklearn.metrics as skm

import tinygrad_lab as tl
from tinygrad_lab import metrics, nn, optim, schedulers
from tinygrad_lab.callbacks import (
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from tinygrad_lab.nn import functional as F
from tinygrad_lab.serialization import load_checkpoint
from tinygrad_lab.train import Callback, Loop, NonFiniteLoss, fit


def _model(seed: int = 0) -> nn.Module:
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8, activation="tanh"), nn.Linear(8, 3))


def _data(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)


def _loss(model: nn.Module, batch: Any) -> tuple[tl.Tensor, tl.Tensor]:
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y), logits


X, Y = _data()


def _batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    return ((X[i:i + 8], Y[i:i + 8]) for i in range(0, len(X), 8))


def _scripted(values: list[float], key: str = "val_loss") -> Any:
    """An evaluate whose n-th call returns values[n]."""
    calls = iter(values)
    return lambda model: {key: next(calls)}


class _Weights(Callback):
    """Each epoch's end weights, to compare with what EarlyStopping restores."""

    def __init__(self) -> None:
        self.states: list[dict[str, np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.states.append(self.loop.model.state_dict())


def _run(values: list[float], *callbacks: Callback, epochs: int | None = None,
         key: str = "val_loss", **kw: Any) -> tuple[nn.Module, Any]:
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    history = fit(model, _batches, _loss, opt, epochs=epochs or len(values),
                  evaluate=_scripted(values, key), callbacks=list(callbacks), **kw)
    return model, history


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


# --- EarlyStopping --------------------------------------------------------------------------------
def test_early_stopping_waits_patience_epochs_and_restores_the_best():
    weights = _Weights()
    stop = EarlyStopping(patience=2, restore_best_weights=True)
    model, history = _run([1.0, 0.5, 0.6, 0.7, 0.1, 0.1], weights, stop)
    assert len(history.epochs) == 4  # best at epoch 2 (index 1), two epochs without progress
    assert stop.stopped_epoch == 3 and stop.best == 0.5 and stop.best_epoch == 1
    assert _same(model.state_dict(), weights.states[1])


def test_early_stopping_restores_even_without_stopping_as_keras_3():
    weights = _Weights()
    stop = EarlyStopping(patience=5, restore_best_weights=True)
    model, history = _run([1.0, 0.4, 0.6], weights, stop)
    assert len(history.epochs) == 3 and stop.stopped_epoch == 0
    assert _same(model.state_dict(), weights.states[1])
    kept, _ = _run([1.0, 0.4, 0.6], weights, EarlyStopping(patience=5))
    assert _same(kept.state_dict(), weights.states[-1])  # without restore: the last


@pytest.mark.parametrize("values, kwargs, epochs_run", [
    ([1.0, 0.95, 0.9, 0.85, 0.8], {"min_delta": 0.1, "patience": 1}, 2),  # steps < min_delta
    ([1.0, 0.9, 0.9, 0.9, 0.9], {"patience": 2}, 4),
    ([1.0, 0.9, 0.9, 0.9, 0.9], {"baseline": 0.5, "patience": 2}, 3),  # never beats baseline
    ([1.0, 2.0, 3.0, 4.0, 0.1], {"start_from_epoch": 2, "patience": 1}, 4),
    ([0.1, 0.2, 0.3, 0.4], {"patience": 0}, 2),  # stops at the first epoch without progress
    ([0.1, 0.2, 0.3, 0.4], {"monitor": "val_accuracy", "patience": 1}, 4),  # auto: max
])
def test_early_stopping_arguments(values, kwargs, epochs_run):
    key = kwargs.get("monitor", "val_loss")
    _, history = _run(values, EarlyStopping(**kwargs), key=key)
    assert len(history.epochs) == epochs_run


def test_early_stopping_per_evaluation_in_one_long_epoch():
    stop = EarlyStopping(patience=1, per="evaluation", restore_best_weights=True)
    model = _model()
    history = fit(model, lambda e: (b for _ in range(5) for b in _batches(e)), _loss,
                  optim.SGD(model.parameters(), lr=0.1), epochs=1, eval_every=2,
                  evaluate=_scripted([1.0, 0.5, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9]),
                  callbacks=[stop])
    assert [e["step"] for e in history.evaluations] == [2, 4, 6]  # stopped after step 6
    assert stop.stopped_epoch == 2


def test_a_monitor_that_never_appears_is_an_error_naming_the_keys():
    epochs: list[int] = []
    with pytest.raises(ValueError, match=r"'val_los'.*available: loss.*val_loss"):
        _run([1.0, 0.5], LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e)),
             EarlyStopping(monitor="val_los", mode="min"))
    assert epochs == [0]  # raised at the first epoch's end
    with pytest.raises(ValueError, match="mode='min' or mode='max'"):
        EarlyStopping(monitor="val_wobble")
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="down")


# --- ModelCheckpoint ------------------------------------------------------------------------------
def test_model_checkpoint_formats_paths_and_keeps_only_improvements(tmp_path):
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.3f}.safetensors")
    saver = ModelCheckpoint(pattern, save_best_only=True, meta={"recipe": "test"})
    weights = _Weights()
    _run([1.0, 0.5, 0.7, 0.25], weights, saver)
    names = [p.rsplit("/", 1)[1] for p in saver.saved]
    assert names == ["ckpt-01-1.000.safetensors", "ckpt-02-0.500.safetensors",
                     "ckpt-04-0.250.safetensors"]
    state, meta = load_checkpoint(saver.saved[1])
    assert meta["recipe"] == "test" and meta["train"]["epoch"] == 2
    assert _same(state, weights.states[1])
    with pytest.raises(ValueError, match="'val_acc'.*available"):
        _run([1.0], ModelCheckpoint(str(tmp_path / "x-{val_acc}.safetensors")))


def test_model_checkpoint_every_n_steps_and_weights_only(tmp_path):
    saver = ModelCheckpoint(str(tmp_path / "s{step}.npz"), save_freq=2, save_weights_only=True)
    _run([1.0, 1.0], saver)  # 3 steps per epoch: steps 2, 4, 6
    assert [p.rsplit("/", 1)[1] for p in saver.saved] == ["s2.npz", "s4.npz", "s6.npz"]
    _, meta = load_checkpoint(saver.saved[0])
    assert "train" not in meta
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint("x.npz", save_freq=0)


class _StopAfter(Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.loop.stop_training = epoch + 1 >= self.epochs


def _adam_fit(model: nn.Module, epochs: int, *callbacks: Callback, resume: Any = None) -> None:
    fit(model, _batches, _loss, optim.Adam(model.parameters(), lr=0.05), epochs=epochs,
        callbacks=list(callbacks), resume=resume)


def test_model_checkpoint_resumes_bit_for_bit(tmp_path):
    full = _model()
    _adam_fit(full, 4)
    saver = ModelCheckpoint(str(tmp_path / "e{epoch}.safetensors"))
    _adam_fit(_model(), 4, saver, _StopAfter(2))
    assert len(saver.saved) == 2
    model = _model(seed=5)  # other weights: all must come from the checkpoint
    _adam_fit(model, 4, resume=saver.saved[1])
    assert _same(model.state_dict(), full.state_dict())


def test_model_checkpoint_mid_epoch_resumes_bit_for_bit(tmp_path):
    full = _model()
    _adam_fit(full, 2)
    saver = ModelCheckpoint(str(tmp_path / "s{step}.safetensors"), save_freq=2)
    _adam_fit(_model(), 2, saver)
    assert saver.saved[0].endswith("s2.safetensors")  # after batch 2 of epoch 1's 3
    model = _model(seed=5)
    _adam_fit(model, 2, resume=saver.saved[0])
    assert _same(model.state_dict(), full.state_dict())


def test_save_checkpoint_outside_fit_is_refused():
    with pytest.raises(RuntimeError, match="running fit"):
        Loop(_model(), [], None, "cpu").save_checkpoint("x.npz")  # type: ignore[arg-type]


# --- learning rate --------------------------------------------------------------------------------
def test_reduce_lr_on_plateau_with_cooldown_and_floor():
    model = _model()
    opt = optim.SGD(model.parameters(), lr=1.0)
    seen: list[float] = []
    reduce = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1, min_lr=0.2)
    fit(model, _batches, _loss, opt, epochs=7, evaluate=_scripted([1.0] * 7),
        callbacks=[reduce, LambdaCallback(on_epoch_end=lambda e, logs: seen.append(opt.lr))])
    # Keras' order: best at epoch 1; epoch 2 waits 1 -> halve; epoch 3 ends the cooldown,
    # then waits 1 -> halve; epoch 4 the same, down to min_lr; then no change
    assert seen == [1.0, 0.5, 0.25, 0.2, 0.2, 0.2, 0.2]
    with pytest.raises(ValueError, match="schedulers"):
        fit(model, _batches, _loss, opt, epochs=1, evaluate=_scripted([1.0]),
            schedulers=[schedulers.StepLR(opt, 1)], callbacks=[ReduceLROnPlateau()])


def test_reduce_lr_on_plateau_scales_every_parameter_group():
    model = _model()
    first, second = model.parameters()[:2], model.parameters()[2:]
    opt = optim.Adam([{"params": first, "lr": 0.1}, {"params": second, "lr": 0.01}])
    fit(model, _batches, _loss, opt, epochs=2, evaluate=_scripted([1.0, 1.0]),
        callbacks=[ReduceLROnPlateau(factor=0.5, patience=1)])
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.005]


def test_learning_rate_scheduler_sets_each_epochs_rate_and_logs_it():
    model = _model()
    opt = optim.SGD(model.parameters(), lr=1.0)
    history = fit(model, _batches, _loss, opt, epochs=3,
                  callbacks=[LearningRateScheduler(lambda epoch, lr: lr if epoch == 0
                                                   else lr / 10)])
    np.testing.assert_allclose([e["learning_rate"] for e in history.epochs], [1.0, 0.1, 0.01])
    with pytest.raises(ValueError, match="returned"):
        fit(model, _batches, _loss, opt, callbacks=[LearningRateScheduler(lambda e, lr: None)])


def test_terminate_on_nan_stops_on_a_nan_epoch_log():
    epochs: list[int] = []

    def custom(epoch: int, logs: dict[str, float]) -> None:
        logs["custom"] = math.nan if epoch == 1 else 1.0

    with pytest.raises(NonFiniteLoss, match="epoch 2: custom nan"):
        _run([1.0, 1.0, 1.0], LambdaCallback(on_epoch_end=custom),
             TerminateOnNaN(monitor="custom"),
             LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e)))
    assert epochs == [0]


# --- CSVLogger ------------------------------------------------------------------------------------
def test_csv_logger_writes_one_row_per_epoch_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    _run([1.0, 0.5], CSVLogger(path))
    _run([0.25], CSVLogger(path, append=True))
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["val_loss"]) for r in rows] == [1.0, 0.5, 0.25]
    assert [r["epoch"] for r in rows] == ["0", "1", "0"]
    assert all(float(r["loss"]) > 0 for r in rows)
    _run([2.0], CSVLogger(path))  # not appending: replaced
    with open(path) as f:
        assert len(list(csv.DictReader(f))) == 1


# --- fit(metrics=) --------------------------------------------------------------------------------
def test_fit_metrics_are_reset_each_epoch_and_logged_under_their_names():
    outputs: list[tuple[np.ndarray, np.ndarray]] = []

    def loss(model: nn.Module, batch: Any) -> tuple[tl.Tensor, tl.Tensor]:
        value, logits = _loss(model, batch)
        outputs.append((batch[1].numpy(), logits.numpy()))
        return value, logits

    model = _model()
    objects = [metrics.get("accuracy"), metrics.get("f1"), metrics.TopKAccuracy(k=2)]
    history = fit(model, _batches, loss, optim.SGD(model.parameters(), lr=0.5), epochs=2,
                  metrics=objects)
    for epoch in range(2):
        chunk = outputs[epoch * 3:(epoch + 1) * 3]
        y = np.concatenate([c[0] for c in chunk])
        pred = np.concatenate([c[1] for c in chunk]).argmax(axis=1)
        logs = history.epochs[epoch]
        assert logs["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert logs["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro",
                                                        labels=np.union1d(y, pred)))
        assert 0 <= logs["top_k_accuracy"] <= 1


def test_fit_metrics_distributed_world_of_one_sums_the_counts():
    logs = []
    for distributed in (False, True):
        model = _model()
        history = fit(model, _batches, _loss, optim.SGD(model.parameters(), lr=0.5), epochs=1,
                      metrics=[metrics.get("f1"), metrics.get("accuracy")],
                      distributed=distributed)
        logs.append(history.epochs[0])
    assert logs[0]["f1"] == pytest.approx(logs[1]["f1"])
    assert logs[0]["accuracy"] == pytest.approx(logs[1]["accuracy"])
    model = _model()
    with pytest.raises(ValueError, match="cannot be summed"):
        fit(model, _batches, _loss, optim.SGD(model.parameters(), lr=0.1),
            metrics=[metrics.get("auc")], distributed=True)


def test_fit_metrics_errors():
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"\(loss, outputs\)"):
        fit(model, _batches, lambda m, b: _loss(m, b)[0], opt, metrics=[metrics.get("mae")])
    with pytest.raises(TypeError, match="Metric"):
        fit(model, _batches, _loss, opt, metrics=["accuracy"])
    with pytest.raises(ValueError, match="share a name"):
        fit(model, _batches, _loss, opt, metrics=[metrics.get("f1"), metrics.get("f1")])
