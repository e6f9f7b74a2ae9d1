"""No silent host<->device copy, one sync per step at most: checked on the stand-in device,
whose `counting()` logs every copy and every value read back.

- class-index losses check device labels with one value read, never a copy of the labels;
- einsum's diagonal, avg-pool divisors and RoPE tables make no copy per call;
- `clip_grad_norm_` answers a 0-d device tensor and reads nothing, so a clipped
  `train_step` reads nothing but what the caller asks for;
- a device with its own random generator (a GPU's) has its state saved in checkpoints, so a
  resumed run with dropout ends bit for bit where an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import Tensor, nn, optim, train
from tinygrad_lab.backends import get_backend
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import standin
from tinygrad_lab.testing.devices import cuda_skip_reason
from tinygrad_lab.testing.standin import StandinArray

SI = standin.NAME
OWN = "standinrng"  # a stand-in drawing from a generator of its own, as a GPU does
standin.register()
standin.register(OWN, own_generator=True)


def _logits(rows: int, classes: int, seed: int = 0) -> Tensor:
    rng = np.random.default_rng(seed)
    return Tensor(rng.standard_normal((rows, classes)), device=SI, requires_grad=True)


# --- 1. labels ------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # no rows: a nan mean
@settings(max_examples=20, deadline=None)
@given(rows=st.integers(0, 6), classes=st.integers(1, 5), ignore=st.booleans(),
       seed=st.integers(0, 99))
def test_device_labels_are_checked_with_one_read_and_no_copy(rows, classes, ignore, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    if ignore and rows:
        labels[0] = -100
    x, y = _logits(rows, classes, seed), Tensor(labels, device=SI)
    with standin.counting() as log:
        loss = F.cross_entropy(x, y)
        F.nll_loss(x.log_softmax(-1), y)
    assert log == ([("read", ())] * 2 if rows else [])  # the range and ignore verdict
    with tl.reference():
        want = F.cross_entropy(Tensor(x.numpy()), labels)
    np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-12)


@pytest.mark.parametrize("bad", [3, -1, 7])
def test_bad_device_labels_stay_an_error(bad: int):
    x, y = _logits(4, 3), Tensor(np.array([0, 1, bad, 2]), device=SI)
    for loss in (F.cross_entropy, F.nll_loss):
        with pytest.raises(ValueError, match=rf"lie in \[0, 3\).*got {bad}"):
            loss(x, y)
    with pytest.raises(ValueError, match=rf"got {bad}"):  # host labels: checked on the host
        F.cross_entropy(x, np.array([0, bad, 1, 1]))
    with pytest.raises(TypeError, match="labels must be integers"):
        F.nll_loss(x, Tensor(np.zeros(4, np.float32), device=SI))


def test_host_labels_are_checked_there_and_moved_once():
    x = _logits(4, 3)
    with standin.counting() as log:
        F.cross_entropy(x, np.array([0, 1, 2, -100]))
    assert log == [("to_device", (4,))]  # no read back: checked before the copy


# --- 2. constants made per call -------------------------------------------------------------------
def _twice(fn: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The copies of a second call (the first may fill a cache)."""
    fn()
    with standin.counting() as log:
        fn()
    return log


def test_einsum_diagonal_makes_no_copy():
    a = Tensor(np.arange(9.0).reshape(3, 3), device=SI, requires_grad=True)
    with standin.counting() as log:
        out = tl.einsum("ii->i", a)
        out.sum().backward()
    assert log == []
    np.testing.assert_array_equal(out.numpy(), [0.0, 4.0, 8.0])


@pytest.mark.parametrize("kw", [{}, {"count_include_pad": False}, {"divisor_override": 3},
                                {"ceil_mode": True, "count_include_pad": False}])
def test_avg_pool_divisors_are_made_on_the_device(kw: dict[str, Any]):
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    t = Tensor(x, device=SI, requires_grad=True)
    with standin.counting() as log:
        out = F.avg_pool2d(t, 3, stride=2, padding=1, **kw)
        out.sum().backward()
    assert log == []
    with tl.reference():
        ref = Tensor(x, requires_grad=True)
        want = F.avg_pool2d(ref, 3, stride=2, padding=1, **kw)
        want.sum().backward()
    np.testing.assert_array_equal(out.numpy(), want.numpy())
    np.testing.assert_array_equal(t.grad.numpy(), ref.grad.numpy())


def test_rope_tables_are_moved_once_per_shape_not_per_call_or_layer():
    x = Tensor(np.random.default_rng(1).standard_normal((2, 2, 5, 4)), device=SI)
    assert _twice(lambda: F.apply_rotary(x)) == []
    first, second = nn.RotaryEmbedding(4, base=500.0), nn.RotaryEmbedding(4, base=500.0)
    first(x)
    with standin.counting() as log:  # another layer of the same shape: the same tables
        out = second(x)
    assert log == []
    with tl.reference():
        want = F.apply_rotary(Tensor(x.numpy()), base=500.0)
    np.testing.assert_array_equal(out.numpy(), want.numpy())


# --- 3. clipping reads nothing --------------------------------------------------------------------
def _mlp() -> nn.Module:
    tl.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8, activation="tanh"), nn.Dropout(0.25), nn.Linear(8, 3))


def _onehot_loss(model: nn.Module, batch: Any) -> Tensor:
    return -(model(batch[0]).log_softmax(-1) * batch[1]).sum(-1).mean()


def _label_loss(model: nn.Module, batch: Any) -> Tensor:
    return F.cross_entropy(model(batch[0]), batch[1])


def _batch(onehot: bool, device: str = SI) -> Any:
    rng = np.random.default_rng(2)
    x, labels = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    target = np.eye(3)[labels] if onehot else labels
    return train.to_device((x, target), device)


@pytest.mark.parametrize("clip", [None, 1e-3, 10.0])
def test_a_clipped_training_step_reads_only_the_loss(clip: float | None):
    model = _mlp().to(SI)
    opt = optim.AdamW(model.parameters(), 1e-2)
    for loss_fn, onehot, reads in ((_onehot_loss, True, 0), (_label_loss, False, 1)):
        batch = _batch(onehot)
        for _ in range(2):
            with standin.counting() as log:
                out = train.train_step(model, batch, loss_fn, opt, clip=clip)
            assert log == [("read", ())] * reads, log  # the label check only
    assert (out.grad_norm is None) == (clip is None)
    if clip is not None:
        assert isinstance(out.grad_norm.data, StandinArray) and out.grad_norm.shape == ()


def test_clipping_on_the_device_matches_the_cpu():
    def run(device: str) -> list[np.ndarray]:
        model = _mlp().to(device)
        opt = optim.SGD(model.parameters(), 0.1)
        norms = [train.train_step(model, _batch(True, device), _onehot_loss, opt,
                                  clip=0.05).grad_norm.numpy() for _ in range(3)]
        return norms + [p.numpy() for p in model.parameters()]

    got = run(SI)
    with tl.reference():
        want = run("cpu")
    assert got[0] > 0.05  # it clipped
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


# --- 4. the device generator in checkpoints -------------------------------------------------------
def test_a_device_generator_state_round_trips():
    backend = get_backend(OWN)
    tl.manual_seed(3)
    backend.random((4,), np.float32)
    state = backend.random_state()
    assert state is not None and get_backend(SI).random_state() is None  # host stream: none
    first = np.asarray(backend.random((5,), np.float64))
    backend.random((7,), np.float32)
    backend.set_random_state(state)
    np.testing.assert_array_equal(np.asarray(backend.random((5,), np.float64)), first)
    with pytest.raises(ValueError, match="expected"):
        backend.set_random_state(np.zeros(3, np.uint64))
    with pytest.raises(ValueError, match="host generator"):
        get_backend(SI).set_random_state(state)


def test_host_random_gives_a_device_with_its_own_generator_the_cpu_masks():
    """DeviceCase.host_random, which lets tests compare dropout on a GPU with the CPU: outside
    it the device's own generator makes other masks for the same seed, inside it the CPU's."""
    from tinygrad_lab.testing.devices import DeviceCase

    x = np.ones((8, 16))

    def dropped(device: str) -> np.ndarray:
        tl.manual_seed(0)
        return nn.Dropout(0.5)(Tensor(x, device=device)).numpy()

    cpu = dropped("cpu")
    assert not np.array_equal(dropped(OWN), cpu)
    case = DeviceCase(OWN, OWN, kernels=False)
    with case.host_random(), case.host_random():  # nests
        np.testing.assert_array_equal(dropped(OWN), cpu)
    assert not np.array_equal(dropped(OWN), cpu)  # restored
    assert "random" not in vars(get_backend(OWN))


X = np.random.default_rng(4).standard_normal((18, 4))
Y = np.eye(3)[np.random.default_rng(5).integers(0, 3, 18)]


def _batches(epoch: int) -> Iterator[Any]:
    return ((X[i:i + 6], Y[i:i + 6]) for i in range(0, len(X), 6))


def _fit(path: Any, resume: Any = None) -> nn.Module:
    model = _mlp()  # tl.manual_seed(0): the device generator restarts too
    train.fit(model, _batches, _onehot_loss, optim.Adam(model.parameters(), 1e-2), epochs=2,
              device=OWN, clip=1.0, checkpoint=train.Checkpointing(path, every=4, at_end=False),
              resume=resume)
    return model


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_resume_with_dropout_on_a_device_generator_is_bit_identical(tmp_path, suffix: str):
    path = tmp_path / f"ckpt{suffix}"
    full = _fit(path)  # 6 steps, the checkpoint after step 4 (epoch 2, batch 1)
    resumed = _fit(tmp_path / f"again{suffix}", resume=path)
    for p, q in zip(resumed.parameters(), full.parameters(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


@pytest.mark.skipif(cuda_skip_reason() is not None, reason=str(cuda_skip_reason()))
def test_the_gpu_generator_state_round_trips():  # pragma: no cover - needs a GPU
    backend = get_backend("cuda")
    tl.manual_seed(3)
    state = backend.random_state()
    first = backend.to_numpy(backend.random((1000,), np.float32))
    backend.random((77,), np.float32)
    backend.set_random_state(state)
    np.testing.assert_array_equal(backend.to_numpy(backend.random((1000,), np.float32)), first)
    with pytest.raises(ValueError, match="does not fit"):
        backend.set_random_state(state[:-1])
