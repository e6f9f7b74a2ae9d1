"""Checkpoints and resuming: an interrupted-and-resumed run ends with the same weights, bit for
bit, as an uninterrupted one (the CNN and GPT recipes through the CLI, and `fit` itself); Ctrl-C
and SIGTERM write the last completed step and exit 130 / 143; a diverged run never replaces a
good file; --save is checked before any data loads; a killed writer's temp files go at the next
save; `tl.save` refuses at save time what `tl.load` could not read back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import cli, datasets, keras, nn, optim, schedulers
from tinygrad_lab.nn import functional as F
from tinygrad_lab.serialization import NonFiniteWeights, load_checkpoint, save_checkpoint
from tinygrad_lab.train import Checkpointing, Interrupted, LambdaCallback, fit

# runs `tinygrad-lab ARGS...` and sends itself SIGNAL right after training step N completes
_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from tinygrad_lab import cli, train
    stop_after, signum = int(sys.argv[1]), getattr(signal, sys.argv[2])
    original, count = train.train_step, [0]
    def counted(*args, **kwargs):
        out = original(*args, **kwargs)
        count[0] += 1
        if count[0] == stop_after:
            os.kill(os.getpid(), signum)
        return out
    train.train_step = counted
    sys.exit(cli.main(sys.argv[3:]))
""")


def _cli(tmp_path: Path, *argv: str, stop: tuple[int, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TINYGRAD_LAB_THREADS="1")  # bit-identical needs the same threads
    prefix = ["-c", _DRIVER, str(stop[0]), stop[1]] if stop else ["-m", "tinygrad_lab"]
    return subprocess.run([sys.executable, *prefix, *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def _same_checkpoints(a: Path, b: Path) -> None:
    sa, _, xa = load_checkpoint(a, with_arrays=True)
    sb, _, xb = load_checkpoint(b, with_arrays=True)
    assert sa.keys() == sb.keys() and xa.keys() == xb.keys()
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k  # bit for bit, not allclose
    for k in xa:
        assert np.array_equal(xa[k], xb[k]), k


CNN = ["train", "mnist-cnn", "--epochs", "2", "--limit", "64", "--batch-size", "16"]
GPT = ["train", "shakespeare-gpt", "--steps", "12", "--batch-size", "4", "--context", "16",
       "--d-model", "16", "--heads", "2", "--layers", "1", "--eval-every", "4",
       "--eval-batches", "1", "--warmup", "2", "--dropout", "0.1"]


def test_cnn_sigterm_then_resume_is_bit_identical(tmp_path):
    ref = _cli(tmp_path, *CNN, "--save", "ref.safetensors")
    assert ref.returncode == 0, ref.stderr
    # SIGTERM after step 6: mid-way through epoch 2 (4 batches an epoch), dropout on
    cut = _cli(tmp_path, *CNN, "--save", "run.safetensors", stop=(6, "SIGTERM"))
    assert cut.returncode == 143, cut.stderr
    assert "SIGTERM after global step 6" in cut.stderr and len(cut.stderr.splitlines()) == 1
    _, meta = load_checkpoint(tmp_path / "run.safetensors")
    assert (meta["train"]["step"], meta["train"]["epoch"], meta["train"]["batch"]) == (6, 1, 2)
    resumed = _cli(tmp_path, *CNN, "--resume", "run.safetensors", "--save", "run.safetensors")
    assert resumed.returncode == 0, resumed.stderr
    _same_checkpoints(tmp_path / "ref.safetensors", tmp_path / "run.safetensors")
    last = [line for line in ref.stdout.splitlines() if line.startswith("epoch 2/2")]
    assert last[0].split(" - ")[2:5] == [line for line in resumed.stdout.splitlines()
                                         if line.startswith("epoch 2/2")][0].split(" - ")[2:5]


MLP = ["train", "mnist-mlp", "--epochs", "2", "--limit", "96", "--batch-size", "32",
       "--hidden", "16"]


def test_keras_mlp_sigterm_then_resume_is_bit_identical(tmp_path):
    ref = _cli(tmp_path, *MLP, "--save", "ref.safetensors")
    assert ref.returncode == 0, ref.stderr
    cut = _cli(tmp_path, *MLP, "--save", "run.safetensors", stop=(4, "SIGTERM"))  # epoch 2
    assert cut.returncode == 143, cut.stderr
    resumed = _cli(tmp_path, *MLP, "--resume", "run.safetensors", "--save", "run.safetensors")
    assert resumed.returncode == 0, resumed.stderr
    _same_checkpoints(tmp_path / "ref.safetensors", tmp_path / "run.safetensors")


def test_gpt_ctrl_c_then_resume_is_bit_identical(tmp_path):
    ref = _cli(tmp_path, *GPT, "--save", "ref.safetensors")
    assert ref.returncode == 0, ref.stderr
    cut = _cli(tmp_path, *GPT, "--save", "run.npz", "--save-every", "4", stop=(6, "SIGINT"))
    assert cut.returncode == 130, cut.stderr
    _, meta = load_checkpoint(tmp_path / "run.npz")
    assert meta["train"]["step"] == 6  # the interrupted step, not the last --save-every one
    resumed = _cli(tmp_path, *GPT, "--resume", "run.npz", "--save", "final.safetensors")
    assert resumed.returncode == 0, resumed.stderr
    _same_checkpoints(tmp_path / "ref.safetensors", tmp_path / "final.safetensors")
    # a checkpoint of other settings, or of another recipe, is refused in one line
    other = _cli(tmp_path, *GPT[:-2], "--dropout", "0.2", "--resume", "run.npz")
    assert other.returncode == 1 and "--dropout 0.1 (now 0.2)" in other.stderr
    assert len(other.stderr.splitlines()) == 1
    foreign = _cli(tmp_path, *CNN, "--resume", "run.npz")
    assert foreign.returncode == 1 and "shakespeare-gpt" in foreign.stderr


# --- the loop itself ------------------------------------------------------------------------------
def _setup() -> tuple[nn.Module, list[optim.Optimizer], list[Any], np.random.Generator]:
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8, activation="tanh"), nn.Dropout(0.2), nn.Linear(8, 3))
    opts: list[optim.Optimizer] = [optim.Adam(model.parameters(), lr=1e-2)]
    scheds = [schedulers.CosineAnnealingLR(opts[0], T_max=20)]
    return model, opts, scheds, np.random.default_rng(7)


def _fit(model: nn.Module, opts: Any, scheds: Any, rng: np.random.Generator, path: Path,
         stop_at: int = 0, resume: Any = None, initial_epoch: int = 0) -> Any:
    x = np.random.default_rng(1).standard_normal((40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def batches(epoch: int) -> Any:  # a shuffle from tl's generator, noise from the recipe's
        order = tl.random.generator().permutation(len(x))
        for i in range(0, len(x), 8):
            idx = order[i:i + 8]
            yield x[idx] + rng.standard_normal((len(idx), 4)).astype(np.float32) * 0.1, y[idx]

    def loss(m: nn.Module, batch: Any) -> Any:
        return F.cross_entropy(m(batch[0]), batch[1])

    def maybe_stop(index: int, logs: dict[str, float]) -> None:
        if stop_at and hook.loop.step == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    hook = LambdaCallback(on_train_batch_end=maybe_stop)
    return fit(model, batches, loss, opts, epochs=3, schedulers=scheds, callbacks=[hook],
               checkpoint=Checkpointing(path, rngs=[rng], meta={"recipe": "test"}),
               resume=resume, initial_epoch=initial_epoch)


def test_fit_interrupt_and_resume_matches_an_uninterrupted_fit(tmp_path):
    model, opts, scheds, rng = _setup()
    reference = _fit(model, opts, scheds, rng, tmp_path / "ref.safetensors")
    final_lr = opts[0].lr
    model, opts, scheds, rng = _setup()
    with pytest.raises(Interrupted) as info:
        _fit(model, opts, scheds, rng, tmp_path / "run.npz", stop_at=7)  # epoch 2, batch 2
    assert info.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    model, opts, scheds, rng = _setup()
    resumed = _fit(model, opts, scheds, rng, tmp_path / "run.npz", resume=tmp_path / "run.npz")
    _same_checkpoints(tmp_path / "ref.safetensors", tmp_path / "run.npz")
    assert [e["loss"] for e in resumed.epochs] == [e["loss"] for e in reference.epochs]
    assert opts[0].lr == final_lr and scheds[0].last_epoch == 15


def test_optimizer_state_dict_round_trip():
    tl.manual_seed(0)
    layer = nn.Linear(3, 2)
    opt = optim.AdamW(layer.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        (layer(tl.Tensor(np.ones((1, 3), np.float32))) ** 2).sum().backward()
        opt.step()
    fresh = optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.5)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.lr == 0.1
    for a, b in zip(opt.state_dict()["state"].values(), fresh.state_dict()["state"].values()):
        assert a["step"] == b["step"] == 2 and np.array_equal(a["m"], b["m"])
        assert a["m"] is not b["m"]
    with pytest.raises(ValueError, match="shape"):
        optim.AdamW(nn.Linear(4, 2).parameters()).load_state_dict(opt.state_dict())


def test_keras_fit_initial_epoch_continues_the_epoch_count():
    tl.manual_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    history = model.fit(x, np.zeros(16, np.int64), epochs=3, initial_epoch=2, verbose=0)
    assert history.epoch == [2]


# --- never a bad file -----------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the diverged matmul's
def test_nan_run_never_overwrites_a_good_checkpoint(tmp_path, capsys):
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"w": np.ones(2, np.float32)}, {"recipe": "mnist-cnn"})
    before = good.read_bytes()
    argv = ["train", "shakespeare-lstm", "--epochs", "2", "--steps-per-epoch", "3",
            "--batch-size", "4", "--seq-len", "8", "--embed", "8", "--hidden", "16",
            "--eval-batches", "1", "--sample-length", "0", "--warmup", "1", "--lr", "1e38",
            "--save", str(good), "--save-every", "1"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "nan" in err and "step" in err and "lower the learning rate" in err
    assert good.read_bytes() == before
    with pytest.raises(NonFiniteWeights, match="'state/w'"):
        save_checkpoint(good, {"w": np.array([np.inf])}, {})
    assert good.read_bytes() == before
    assert list(tmp_path.iterdir()) == [good]  # and no temp file left


@pytest.mark.parametrize("argv", [["--lr", "inf"], ["--lr", "nan"], ["--weight-decay", "nan"]])
def test_non_finite_settings_are_refused_at_parsing(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "shakespeare-gpt", *argv])
    assert info.value.code == 2 and "must be finite" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", ["mnist-cnn", "mnist-mlp", "shakespeare-gpt",
                                    "shakespeare-lstm"])
def test_save_under_a_file_fails_before_any_data_loads(recipe, tmp_path, capsys, monkeypatch):
    def no_data(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("data loaded before --save was checked")

    monkeypatch.setattr(datasets, "load_mnist", no_data)
    monkeypatch.setattr(datasets, "load_shakespeare_chars", no_data)
    (tmp_path / "a-file").write_text("x")
    assert cli.main(["train", recipe, "--save", str(tmp_path / "a-file" / "m.npz")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"cannot save to {tmp_path / 'a-file' / 'm.npz'}: {tmp_path / 'a-file'} is a file" \
        in err


# --- the file layer -------------------------------------------------------------------------------
def test_stale_temp_files_of_the_target_are_removed_at_the_next_save(tmp_path):
    target = tmp_path / "w.safetensors"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".w.safetensors.{dead.pid}.abc123.tmp", tmp_path / ".w.safetensors.x.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 100)
        os.utime(path, (0, 0))
    live = tmp_path / f".w.safetensors.{os.getppid()}.zzz.tmp"  # a live writer's: kept
    other = tmp_path / f".other.npz.{dead.pid}.abc.tmp"  # another target's: kept
    live.write_bytes(b"")
    other.write_bytes(b"")
    tl.save({"a": np.arange(3)}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, other.name, target.name])
    assert np.array_equal(tl.load(target)["a"], np.arange(3))


@pytest.mark.parametrize("value, words", [
    (None, "'bad' holds a NoneType"), ({"x": 1}, "'bad' holds a dict"),
    (np.array([object()]), "'bad' has dtype object"), ("text", "'bad' holds a str")])
@pytest.mark.parametrize("name", ["w.npz", "w.safetensors"])
def test_save_refuses_what_load_cannot_read_naming_the_key(value, words, name, tmp_path):
    with pytest.raises(ValueError, match=words):
        tl.save({"ok": np.ones(2), "bad": value}, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_keeps_reserved_numpy_names_and_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    state = {"allow_pickle": np.ones(2), "file": np.zeros(1), "a/b": np.arange(2)}
    for name in ("~/x.npz", "~/x.safetensors"):
        tl.save(state, name)
        loaded = tl.load(name)
        assert loaded.keys() == state.keys()
    assert not (tmp_path / "~").exists() and (tmp_path / "x.safetensors").exists()
    with pytest.raises(ValueError, match="reserved"):
        tl.save({"__meta__": np.ones(1)}, tmp_path / "y.npz")


def test_safetensors_file_is_standard(tmp_path):
    from safetensors.numpy import load_file

    save_checkpoint(tmp_path / "c.safetensors", {"w": np.eye(2, dtype=np.float32)},
                    {"recipe": "r"})
    assert np.array_equal(load_file(tmp_path / "c.safetensors")["state/w"], np.eye(2))
    state, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert meta == {"recipe": "r"} and state["w"].dtype == np.float32
