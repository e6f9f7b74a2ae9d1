"""The training step and loop (tinygrad_lab.train): a step equals the hand-written sequence, the
hook sits between backward and the optimizer, a nan loss touches no parameter, the loop calls its
hook points in Keras' order, evaluates when asked, stops when asked, and checkpoints at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import nn, optim, schedulers
from tinygrad_lab.nn import functional as F
from tinygrad_lab.serialization import load_checkpoint
from tinygrad_lab.train import (
    Callback,
    CheckpointAtEnd,
    LambdaCallback,
    NonFiniteLoss,
    fit,
    train_step,
)


def _model(seed: int = 0) -> nn.Module:
    tl.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8, activation="tanh"), nn.Linear(8, 3))


def _data(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)


def _loss(model: nn.Module, batch: Any) -> tuple[tl.Tensor, tl.Tensor]:
    x, y = batch
    logits = model(x if isinstance(x, tl.Tensor) else tl.Tensor(x))
    return F.cross_entropy(logits, y), logits


def _batches(x: np.ndarray, y: np.ndarray, size: int = 8) -> Any:
    return lambda epoch: ((x[i:i + size], y[i:i + size]) for i in range(0, len(x), size))


def test_train_step_equals_the_hand_written_step():
    x, y = _data()
    a, b = _model(), _model()
    opt_a, opt_b = optim.Adam(a.parameters(), lr=1e-2), optim.Adam(b.parameters(), lr=1e-2)
    for _ in range(3):
        out = train_step(a, (x, y), _loss, opt_a)
        loss = F.cross_entropy(b(tl.Tensor(x)), y)
        opt_b.zero_grad()
        loss.backward()
        opt_b.step()
        assert out.loss.item() == loss.item()
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_grad_hook_runs_after_backward_and_before_the_update():
    x, y = _data()
    model, twin = _model(), _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    train_step(model, (x, y), _loss, opt)  # leaves gradients behind: the next step clears them
    train_step(twin, (x, y), _loss, optim.SGD(twin.parameters(), lr=0.1))
    loss = F.cross_entropy(twin(tl.Tensor(x)), y)
    twin.zero_grad()
    loss.backward()
    expected = [p.grad.numpy().copy() for p in twin.parameters()]  # at the current weights
    before = [p.numpy().copy() for p in model.parameters()]
    calls = []

    def hook(params: list[Any]) -> None:
        calls.append(len(params))
        for p, old, g in zip(params, before, expected):
            np.testing.assert_array_equal(p.numpy(), old)  # not stepped yet
            np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-6)  # this step's only
            p.grad.data[...] = 0  # a hook may rewrite gradients, as an all-reduce does

    train_step(model, (x, y), _loss, opt, grad_hook=hook)
    assert calls == [len(before)]
    for p, old in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), old)  # zeroed gradients: SGD moved nothing


def test_clip_bounds_the_global_gradient_norm():
    x, y = _data()
    model = _model()
    out = train_step(model, (x, y), _loss, optim.SGD(model.parameters(), lr=0.0), clip=1e-3)
    assert out.grad_norm is not None and out.grad_norm.item() > 1e-3
    clipped = np.sqrt(sum(float((p.grad.numpy().astype(np.float64) ** 2).sum())
                          for p in model.parameters()))
    assert clipped == pytest.approx(1e-3, rel=1e-3)


def test_nonfinite_loss_raises_before_any_parameter_changes():
    x, y = _data()
    x[0, 0] = np.nan
    model = _model()
    before = [p.numpy().copy() for p in model.parameters()]
    with pytest.raises(NonFiniteLoss, match="nan"):
        train_step(model, (x, y), _loss, optim.Adam(model.parameters()), check_finite=True)
    for p, old in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), old)
        assert p.grad is None


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_begin(self, logs: dict[str, float]) -> None:
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch: int, logs: dict[str, float]) -> None:
        self.calls.append(f"epoch_begin {epoch}")

    def on_train_batch_begin(self, batch: int, logs: dict[str, float]) -> None:
        self.calls.append(f"batch_begin {batch}")

    def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
        self.calls.append(f"batch_end {batch}")

    def on_evaluate(self, step: int, logs: dict[str, float]) -> None:
        self.calls.append(f"evaluate {step}")

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.calls.append(f"epoch_end {epoch}")

    def on_train_end(self, logs: dict[str, float]) -> None:
        self.calls.append("train_end")


def test_fit_calls_the_hook_points_in_order_and_evaluates_every_n_steps():
    x, y = _data(16)
    model = _model()
    recorder = Recorder()
    history = fit(model, _batches(x, y), _loss, optim.Adam(model.parameters(), lr=1e-2),
                  epochs=2, evaluate=lambda m: {"val_loss": 1.0}, eval_every=3,
                  callbacks=[recorder])
    assert recorder.calls == [
        "train_begin",
        "epoch_begin 0", "batch_begin 0", "batch_end 0", "batch_begin 1", "batch_end 1",
        "evaluate 2", "epoch_end 0",  # the epoch's end evaluates when step 2 has not been
        "epoch_begin 1", "batch_begin 0", "batch_end 0", "evaluate 3", "batch_begin 1",
        "batch_end 1", "evaluate 4", "epoch_end 1",
        "train_end",
    ]
    assert [e["step"] for e in history.evaluations] == [2, 3, 4]
    assert len(history.epochs) == 2 and all("val_loss" in e for e in history.epochs)
    assert all(e["samples_per_second"] > 0 for e in history.epochs)


def test_fit_averages_loss_and_metrics_over_samples_and_steps_schedulers():
    x, y = _data(20)
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    schedule = schedulers.StepLR(opt, step_size=1, gamma=0.5)
    losses: list[tuple[float, int]] = []
    history = fit(model, _batches(x, y, 8), _loss, opt, epochs=1, schedulers=[schedule],
                  batch_metrics=lambda logits, batch: {"ones": float(len(batch[1].numpy()))},
                  callbacks=[LambdaCallback(on_train_batch_end=lambda i, logs: losses.append(
                      (logs["batch_loss"], int(logs["size"]))))])
    assert [n for _, n in losses] == [8, 8, 4]
    expected = sum(v * n for v, n in losses) / 20
    assert history.epochs[0]["loss"] == pytest.approx(expected)
    assert history.epochs[0]["ones"] == pytest.approx(1.0)
    assert opt.lr == pytest.approx(0.1 * 0.5 ** 3)


def test_stop_training_ends_the_run_after_the_current_step():
    x, y = _data(32)
    model = _model()

    class StopAtTwo(Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, float]) -> None:
            if self.loop.step == 2:
                self.loop.stop_training = True

    history = fit(model, _batches(x, y), _loss, optim.Adam(model.parameters()), epochs=5,
                  callbacks=[StopAtTwo()])
    assert len(history.epochs) == 1


def test_nan_stops_the_loop_naming_the_step_and_keeps_the_saved_checkpoint(tmp_path):
    x, y = _data(24)
    x[20, 0] = np.nan  # in the third batch of 8
    model = _model()
    path = tmp_path / "ckpt.npz"
    fit(model, _batches(x[:16], y[:16]), _loss, optim.Adam(model.parameters()),
        callbacks=[CheckpointAtEnd(str(path), lambda logs: {"loss": logs["loss"]})])
    good = path.read_bytes()
    state, meta = load_checkpoint(path)
    assert set(state) == set(model.state_dict()) and np.isfinite(meta["loss"])
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 3 \(global step 3\)"):
        fit(model, _batches(x, y), _loss, optim.Adam(model.parameters()),
            callbacks=[CheckpointAtEnd(str(path), {"recipe": "test"})])
    assert path.read_bytes() == good
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())


def test_lambda_callback_rejects_unknown_hooks_and_fit_rejects_bad_settings():
    with pytest.raises(TypeError, match="on_epoch_ending"):
        LambdaCallback(on_epoch_ending=print)
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, lambda e: [], _loss, opt, epochs=-1)
    with pytest.raises(ValueError, match="eval_every"):
        fit(model, lambda e: [], _loss, opt, eval_every=0)


def test_an_epoch_without_batches_raises_instead_of_logging_a_loss():
    model = _model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no batches in epoch 1"):
        fit(model, lambda e: [], _loss, opt)
    x, y = _data()
    with pytest.raises(ValueError, match="no batches in epoch 2"):
        fit(model, lambda e: _batches(x, y)(e) if e == 0 else iter(()), _loss, opt, epochs=2)


def test_a_nan_evaluation_raises_instead_of_being_logged():
    """np.mean([]) over an empty evaluation set is nan: an error, not a figure in the logs."""
    x, y = _data()
    model = _model()
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="val_loss"):
        fit(model, _batches(x, y), _loss, optim.SGD(model.parameters(), lr=0.1),
            evaluate=lambda m: {"val_loss": float(np.mean([]))})
    assert model.training
