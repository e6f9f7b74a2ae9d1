"""The non-CPU path end to end: what `device="cuda"` runs, checked here on the stand-in device
(tinygrad_lab.testing.standin: NumPy maths, CuPy's narrower API, every host<->device copy
counted) and, where a GPU is present, on `cuda` itself.

- every library model trains a few steps on the device with the CPU reference path's results;
- a training step copies nothing between host and device: no transfer at all, one read back
  per embedding call (its id check) and the loss read the caller asks for;
- the stand-in refuses what CuPy lacks (as_strided's `writeable`, ufunc.at), so the ops cannot
  depend on it; scatter-add and dropout masks are made on the device;
- `--device cuda` reaches every train target and `sample`, and fails in one line without CuPy
  or without a GPU;
- checkpoints load onto a device, optimizer state follows Module.to, mixed devices are named.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import Tensor, backends, nn, optim, train
from tinygrad_lab import models as M
from tinygrad_lab import random as tl_random
from tinygrad_lab.backends.cuda import CUDABackend
from tinygrad_lab.nn import functional as F
from tinygrad_lab.serialization import load_checkpoint, save_checkpoint
from tinygrad_lab.testing import standin
from tinygrad_lab.testing.devices import DeviceCase, cuda_skip_reason
from tinygrad_lab.testing.standin import StandinArray

SI = standin.NAME
ON_DEVICE = pytest.mark.parametrize("device", ["standin", "cuda"], indirect=True)


# --- the models ---------------------------------------------------------------------------------
def _nll(logits: Tensor, onehot: Tensor) -> Tensor:
    """Cross-entropy against one-hot targets already on the device: no label handling at all,
    so the step's own copies are all that is counted."""
    return -(logits.log_softmax(-1) * onehot).sum(-1).mean()


ModelCase = tuple[Callable[[float], nn.Module], Callable[[], tuple[np.ndarray, np.ndarray]], int]


def _model_cases() -> dict[str, ModelCase]:
    """name -> (make(dropout), batch() -> (inputs, labels), classes)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 7, size=(2, 6))
    images = rng.random((2, 1, 8, 8), dtype=np.float32)
    flat = rng.random((4, 6), dtype=np.float32)
    return {
        "MLP": (lambda p: M.MLP(M.MLPConfig(inputs=6, hidden=(5,), classes=3)),
                lambda: (flat, np.array([0, 1, 2, 1])), 3),
        "CNN": (lambda p: M.CNN(M.CNNConfig(image=8, channels=(2,), hidden=5, classes=3,
                                            dropout=p)),
                lambda: (images, np.array([0, 2])), 3),
        "GPT": (lambda p: M.GPT(M.GPTConfig(vocab_size=7, block_size=5, d_model=8, num_heads=2,
                                            num_layers=1, d_ff=16, dropout=p)),
                lambda: (tokens[:, :5], tokens[:, 1:]), 7),
        "CharLSTM": (lambda p: M.CharLSTM(M.CharLSTMConfig(vocab_size=7, embed=4, hidden=5)),
                     lambda: (tokens.T[:5], tokens.T[1:]), 7),
    }


def _loss(model: nn.Module, batch: train.Batch) -> Tensor:
    out = model(batch[0])
    return _nll(out[0] if isinstance(out, tuple) else out, batch[1])


def _device_batch(name: str, device: str) -> train.Batch:
    _, make_batch, classes = _model_cases()[name]
    x, labels = make_batch()
    onehot = np.eye(classes, dtype=np.float32)[labels]
    return train.to_device((x, onehot), device)


def _train(name: str, device: str, steps: int, dropout: float) -> list[np.ndarray]:
    """Losses and final parameters after `steps` AdamW steps (clipped) of model `name`."""
    make = _model_cases()[name][0]
    tl.manual_seed(0)
    model = make(dropout).to(device)
    opt = optim.AdamW(model.parameters(), 1e-2)
    batch = _device_batch(name, device)
    losses = [train.train_step(model, batch, _loss, opt, clip=1.0).loss.numpy()
              for _ in range(steps)]
    return [*losses, *[p.numpy() for p in model.parameters()]]


def test_the_model_table_covers_every_library_model():
    exported = {name for name in M.__all__
                if isinstance(getattr(M, name), type) and issubclass(getattr(M, name), nn.Module)}
    assert exported == set(_model_cases())


@ON_DEVICE
@pytest.mark.parametrize("name", ["MLP", "CNN", "GPT", "CharLSTM"])
def test_every_model_trains_on_the_device_like_the_cpu(name: str, device: DeviceCase):
    # the stand-in draws dropout masks from the host generator's stream, a GPU from its own
    dropout = 0.25 if device.name == "standin" else 0.0
    got = _train(name, device.device, 3, dropout)
    with tl.reference():
        want = _train(name, "cpu", 3, dropout)
    exact = device.name == "standin"  # the same NumPy maths: the same bits
    for g, w in zip(got, want, strict=True):
        assert type(g) is np.ndarray and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-6 if exact else 2e-4, atol=1e-7 if exact else 1e-5)


# --- no silent copies ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["MLP", "CNN", "GPT", "CharLSTM"])
def test_a_training_step_copies_nothing_between_host_and_device(name: str):
    make = _model_cases()[name][0]
    tl.manual_seed(0)
    model = make(0.25).to(SI)
    opt = optim.Adam(model.parameters(), 1e-2)  # state made lazily, on the device
    batch = _device_batch(name, SI)
    embeddings = sum(isinstance(m, nn.Embedding) for m in model.modules())
    for _ in range(2):  # the first step makes the optimizer state, the second reuses it
        with standin.counting() as log:
            out = train.train_step(model, batch, _loss, opt)
        assert log == [("read", ())] * embeddings, log  # the id check: one value per call
        with standin.counting() as log:
            value = out.loss.item()
        assert log == [("to_host", ())] and np.isfinite(value)  # the one read asked for
    assert all(isinstance(a, StandinArray) for s in opt.state.values() for a in s.values()
               if hasattr(a, "shape"))


def test_the_counter_sees_each_kind_of_copy():
    x = Tensor(np.arange(6.0).reshape(2, 3), device=SI)
    with standin.counting() as log:
        moved = x + np.ones(3)  # a host operand is moved: counted
        moved.numpy()
        float(moved.data.sum())
        x * 2.0  # a number is made on the device: not counted
        standin.xp.asarray([1.0, 2.0])
        standin.xp.zeros(3)
    assert log == [("to_device", (3,)), ("to_host", (2, 3)), ("read", ()),
                   ("to_device", (2,))]


# --- the stand-in narrows NumPy to CuPy ------------------------------------------------------
def test_the_standin_has_only_what_cupy_has():
    xp = standin.xp
    a = xp.arange(6.0)
    with pytest.raises(TypeError):
        xp.lib.stride_tricks.as_strided(a, shape=(2, 2), strides=(8, 8), writeable=False)
    view = xp.lib.stride_tricks.as_strided(a, shape=(2, 2), strides=(16, 8))
    assert isinstance(view, StandinArray) and view.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    with pytest.raises(AttributeError, match="scatter_add"):
        xp.add.at(a, xp.asarray([0, 0]), 1.0)
    with pytest.raises(AttributeError, match="scatter_add"):
        np.add.at(a, xp.asarray([0, 0]), 1.0)
    xp.scatter_add(a, xp.asarray([0, 0, 5]), xp.asarray([1.0, 2.0, 3.0]))  # cupyx's signature
    assert a.tolist() == [3.0, 1.0, 2.0, 3.0, 4.0, 8.0]


@ON_DEVICE
def test_scatter_add_adds_repeated_indices_on_the_device(device: DeviceCase):
    backend = backends.get_backend(device.device)
    out = backend.xp.zeros((3, 2))
    ids = backend.asarray(np.array([2, 0, 2, 2]))
    got = backend.call("scatter_add", out, ids, backend.asarray(np.ones((4, 2))))
    np.testing.assert_array_equal(backend.to_numpy(got), [[1, 1], [0, 0], [3, 3]])
    x = Tensor(np.arange(4.0), device=device.device, requires_grad=True)
    x[Tensor(np.array([1, 1, 3]), device=device.device)].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 2, 0, 1])


@ON_DEVICE
def test_pools_and_convolutions_run_on_the_device(device: DeviceCase):
    """im2col and both pools take strided views (no `writeable` on CuPy); max-pool's backward
    scatter-adds."""
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))

    def run(where: str) -> list[np.ndarray]:
        t = Tensor(x, device=where, requires_grad=True)
        w = Tensor(np.linspace(-1, 1, 54).reshape(3, 2, 3, 3), device=where, requires_grad=True)
        y = F.max_pool2d(F.conv2d(t, w, padding=1), 3, 2, 1) + F.avg_pool2d(t, 2).sum()
        y.sum().backward()
        return [y.numpy(), t.grad.numpy(), w.grad.numpy()]

    with tl.reference():
        want = run("cpu")
    for g, w in zip(run(device.device), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


def test_embedding_ids_are_checked_with_one_read():
    w = Tensor(np.zeros((5, 2)), device=SI)
    ids = Tensor(np.array([[0, 1], [7, 2]]), device=SI)
    with standin.counting() as log, pytest.raises(IndexError, match="id 7 .*vocabulary of 5"):
        F.embedding(ids, w)
    assert log == [("read", ())] * 3  # the verdict, then (only now) where and which id
    good = Tensor(np.array([0, 4]), device=SI)
    with standin.counting() as log:
        F.embedding(good, w)
    assert log == [("read", ())]


# --- dropout draws on the device ----------------------------------------------------------------
def test_device_generators_are_seeded_by_manual_seed():
    """CUDABackend.random's bookkeeping, run with NumPy standing in for CuPy: the generator is
    remade from tinygrad_lab.random.device_seed after every manual_seed."""
    fake = object.__new__(CUDABackend)
    fake.xp, fake._gpu, fake.device = np, contextlib.nullcontext(), "cuda:0"
    fake._rng, fake._rng_epoch = None, -1

    def draw() -> np.ndarray:
        return fake.random((3,), np.float32)

    tl.manual_seed(7)
    first = draw()
    assert first.dtype == np.float32 and not np.array_equal(first, draw())
    tl.manual_seed(7)
    np.testing.assert_array_equal(draw(), first)
    assert tl_random.device_seed("cuda:0") != tl_random.device_seed("cuda:1")
    tl.manual_seed(8)
    assert not np.array_equal(draw(), first)


@ON_DEVICE
def test_dropout_masks_are_made_on_the_device_and_repeat_with_the_seed(device: DeviceCase):
    x = Tensor(np.ones((50, 40), np.float32), device=device.device)

    def masked() -> np.ndarray:
        tl.manual_seed(3)
        return F.dropout(x, 0.5).numpy()

    if device.name == "standin":
        with standin.counting() as log:
            F.dropout(x, 0.5)
        assert log == []
    first = masked()
    np.testing.assert_array_equal(masked(), first)
    assert set(np.unique(first)) == {0.0, 2.0} and 0.4 < (first == 0).mean() < 0.6


# --- moving models, optimizer state and checkpoints ---------------------------------------------
@ON_DEVICE
def test_optimizer_state_follows_module_to(device: DeviceCase):
    def run(move_at: int | None) -> list[np.ndarray]:
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3, dtype=np.float64), nn.Tanh(),
                              nn.Linear(3, 2, dtype=np.float64))
        opt = optim.Adam(model.parameters(), 0.1)
        x, y = np.random.default_rng(1).standard_normal((2, 5, 4))[0], np.eye(2)[[0, 1, 1, 0, 1]]
        for step in range(4):
            if step == move_at:
                model.to(device.device)
            where = model.parameters()[0].device
            opt.zero_grad()
            _nll(model(Tensor(x, device=where)), Tensor(y, device=where)).backward()
            opt.step()
        for state in opt.state.values():  # the state lives where the parameters do
            for value in state.values():
                if hasattr(value, "shape"):
                    assert type(value) is type(model.parameters()[0].data)
        return [p.numpy() for p in model.parameters()]

    with tl.reference():
        want = run(None)
        for moved in (0, 2):  # before any state exists, and after it does
            for g, w in zip(run(moved), want, strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


@ON_DEVICE
def test_checkpoints_load_onto_a_device(device: DeviceCase, tmp_path):
    tl.manual_seed(0)
    model = M.MLP(M.MLPConfig(inputs=6, hidden=(5,), classes=3))
    state = model.state_dict()
    tl.save(state, tmp_path / "w.safetensors")
    save_checkpoint(tmp_path / "c.safetensors", state, {"recipe": "test"})
    for loaded in (tl.load(tmp_path / "w.safetensors", device=device.device),
                   tl.load(tmp_path / "w.safetensors", map_location=device.device),
                   load_checkpoint(tmp_path / "c.safetensors", device=device.device)[0]):
        assert {t.device for t in loaded.values()} == {backends.canonical_device(device.device)}
        fresh = M.MLP(M.MLPConfig(inputs=6, hidden=(5,), classes=3)).to(device.device)
        if device.name == "standin":
            with standin.counting() as log:
                fresh.load_state_dict(loaded)
            assert log == []  # copied on the device, not through the host
        else:
            fresh.load_state_dict(loaded)
        for name, value in fresh.state_dict().items():
            np.testing.assert_array_equal(value, state[name])
    with pytest.raises(ValueError, match="disagree"):
        tl.load(tmp_path / "w.safetensors", device="cpu", map_location=SI)


def test_mixing_devices_names_both():
    a, b = Tensor([1.0, 2.0]), Tensor([1.0, 2.0], device=SI)
    for mixed in (lambda: a + b, lambda: b * a, lambda: a @ b,
                  lambda: nn.Linear(2, 2).to(SI)(a)):
        with pytest.raises(RuntimeError) as info:
            mixed()
        message = str(info.value)
        assert "'cpu'" in message and f"'{SI}:0'" in message and "\n" not in message, message


# --- the command line ---------------------------------------------------------------------------
def test_every_train_target_and_sample_take_a_device():
    from tinygrad_lab import cli, recipes

    parser = cli._parser()
    for name in recipes.RECIPES:
        assert parser.parse_args(["train", name]).device == "cpu"
        assert parser.parse_args(["train", name, "--device", "cuda:1"]).device == "cuda:1"
    assert parser.parse_args(["sample", "x.safetensors", "--device", "cuda"]).device == "cuda"


@pytest.fixture
def no_cuda_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget any CUDA backend made before, so the next one is built (and can fail) afresh."""
    monkeypatch.setattr(backends, "_INSTANCES", {k: v for k, v in backends._INSTANCES.items()
                                                 if v.name != "cuda"})


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from tinygrad_lab import cli

    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


@pytest.mark.usefixtures("no_cuda_backends")
def test_device_cuda_without_cupy_fails_in_one_line_naming_the_extra(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_cupy(name: str, *args: Any, **kw: Any) -> Any:
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    for argv in (["train", "mnist-cnn", "--device", "cuda", "--epochs", "1"],
                 ["train", "shakespeare-gpt", "--device", "cuda:1"],
                 ["sample", "missing.safetensors", "--device", "cuda"],
                 ["bench", "scaling", "--quick", "--device", "cuda"]):
        err = _cli_error(argv, capsys)
        assert "pip install 'tinygrad_lab[cuda]'" in err and "'cuda:" in err, err
    with pytest.raises(RuntimeError, match=r"tinygrad_lab\[cuda\]"):
        Tensor([1.0], device="cuda")


@pytest.mark.usefixtures("no_cuda_backends")
def test_device_cuda_without_a_gpu_fails_in_one_line_naming_the_driver(capsys):
    if cuda_skip_reason() is None:
        pytest.skip("a GPU is present")
    for argv in (["train", "mnist-mlp", "--device", "cuda", "--epochs", "1"],
                 ["sample", "missing.safetensors", "--device", "cuda:0"],
                 ["bench", "scaling", "--quick", "--device", "cuda"]):
        err = _cli_error(argv, capsys)
        assert "no NVIDIA driver or GPU" in err and "'cuda:0'" in err, err


def test_a_bad_device_name_fails_in_one_line(capsys):
    for argv in (["train", "mnist-cnn", "--device", "gpu"], ["sample", "x.npz", "--device", "gpu"]):
        err = _cli_error(argv, capsys)
        assert "unknown device 'gpu'" in err, err
    err = _cli_error(["train", "mnist-mlp", "--device", "cpu:1"], capsys)
    assert "'cpu' takes no index" in err, err


def test_recipes_train_on_the_device_they_are_given(monkeypatch):
    """--device reaches train.fit (keras' Sequential.fit for mnist-mlp) in every recipe."""
    from tinygrad_lab import cli, recipes
    from tinygrad_lab.keras import models as keras_models

    seen: list[str | None] = []

    def fake_fit(*args: Any, device: str | None = None, **kw: Any) -> Any:
        seen.append(device)
        raise KeyboardInterrupt("stopped before training")

    monkeypatch.setattr(train, "fit", fake_fit)
    monkeypatch.setattr(keras_models.Sequential, "fit", fake_fit)
    for name in recipes.RECIPES:
        assert cli.main(["train", name, "--device", f"{SI}:1"]) == 130, name
    assert seen == [f"{SI}:1"] * len(recipes.RECIPES)


def test_sample_runs_the_model_on_the_device(tmp_path, capsys):
    from dataclasses import asdict

    from tinygrad_lab import cli

    config = M.GPTConfig(vocab_size=3, block_size=4, d_model=8, num_heads=2, num_layers=1,
                         d_ff=16)
    tl.manual_seed(0)
    path = tmp_path / "gpt.safetensors"
    save_checkpoint(path, M.GPT(config).state_dict(),
                    {"recipe": "shakespeare-gpt", "config": asdict(config), "vocab": "\nab"})
    texts = []
    for where in ("cpu", SI):
        assert cli.main(["--reference", "sample", str(path), "--device", where, "--length", "9",
                         "--prompt", "ab"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and len(texts[0]) == len("ab") + 9 + 1  # and a newline


@pytest.mark.parametrize("argv", [
    ["shakespeare-gpt", "--steps", "3", "--d-model", "8", "--heads", "2", "--layers", "1",
     "--context", "8", "--batch-size", "2", "--eval-every", "3", "--eval-batches", "1",
     "--dropout", "0.1", "--warmup", "1"],
    ["shakespeare-lstm", "--epochs", "1", "--steps-per-epoch", "2", "--hidden", "8", "--embed",
     "4", "--seq-len", "8", "--batch-size", "2", "--eval-batches", "1", "--sample-length", "0"],
], ids=lambda argv: argv[0])
def test_a_recipe_trains_on_the_standin_as_on_the_cpu(argv: list[str], capsys):
    from tinygrad_lab import cli, recipes

    results, moved = [], []
    for where in ("cpu", SI):
        args = cli._parser().parse_args(["train", *argv, "--device", where])
        with tl.reference(), standin.counting() as log:
            results.append(recipes.get(args.target).run(args)["val_loss"])
        moved.append(sum(kind == "to_device" for kind, _ in log))
    capsys.readouterr()
    assert results[0] == results[1] and np.isfinite(results[0])
    assert moved[0] == 0 and moved[1] > 0  # the second run's batches did go to the stand-in


def test_the_standin_refuses_numpy_only_names():
    a = standin.xp.zeros(3)
    for missing in (lambda: standin.xp.errstate, lambda: standin.xp.insert, lambda: a.resize):
        with pytest.raises(AttributeError, match="CuPy"):
            missing()


@pytest.mark.parametrize("make", ["cuda", "cpu"])
def test_kernels_get_contiguous_arrays_and_references_the_originals(make: str):
    """The kernel contract (backends/base.py with_fallback): every array argument, positional
    or keyword, reaches a kernel C-contiguous; the reference, on NotImplemented, gets them as
    given. CUDABackend.wrap_kernel is run with NumPy standing in for CuPy."""
    import types

    if make == "cuda":
        backend = object.__new__(CUDABackend)
        backend.xp = types.SimpleNamespace(ndarray=np.ndarray,
                                           ascontiguousarray=np.ascontiguousarray)
        backend._gpu = contextlib.nullcontext()
    else:
        backend = backends.get_backend("cpu")
    seen: dict[str, list[bool]] = {}

    def kernel(a: np.ndarray, *, mask: np.ndarray) -> Any:
        seen["kernel"] = [a.flags.c_contiguous, mask.flags.c_contiguous]
        return NotImplemented if a.shape[0] > 3 else a.sum() + mask.sum()

    def reference(a: np.ndarray, *, mask: np.ndarray) -> Any:
        seen["reference"] = [a.flags.c_contiguous, mask.flags.c_contiguous]
        return -1.0

    call = backend.wrap_kernel(kernel, reference)
    assert call.__wrapped__ is kernel
    a, mask = np.ones((3, 4)).T, np.ones((4, 2))[::2]  # neither C-contiguous
    assert call(a[:3], mask=mask) == 9 + 4 and seen["kernel"] == [True, True]
    assert call(a, mask=mask) == -1.0 and seen["reference"] == [False, False]
