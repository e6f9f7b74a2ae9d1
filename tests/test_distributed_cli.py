"""Data-parallel training from the command line and through `train.fit(distributed=...)`:
`mpiexec -n 2 tinygrad-lab train TARGET --distributed` prints one banner (world 2) and one set
of numbers, from rank 0, matches a one-process run of the same global batch, and writes --save
once; ranks agree on a nan loss and on a stop asked by one of them; `bench distributed --quick`
measures 1 and 2 ranks; the ring all-reduce formula of the README reproduces a hand count.

Every rank runs one thread (`--threads 1`): two ranks on the two cores of CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lab import distributed as dist
from tinygrad_lab import helpers, recipes
from tinygrad_lab.scaling import allreduce

ONE_THREAD = {var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                   "NUMBA_NUM_THREADS", "TINYGRAD_LAB_THREADS")}


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if found is None:  # not a skip: the dev extra installs mpi4py and mpich
        pytest.fail("mpiexec not found: pip install -e '.[dev]' (mpi4py and mpich)")
    return found


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **ONE_THREAD})
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def cli(ranks: int | None, *args: str, cwd: Path, threads: bool = True) -> str:
    """`tinygrad-lab --threads 1 ARGS` (without --threads: the default), under
    `mpiexec -n RANKS` (None: a plain process)."""
    command = [sys.executable, "-m", "tinygrad_lab", *(["--threads", "1"] if threads else []),
               *args]
    if ranks is not None:
        command = [_mpiexec(), "-n", str(ranks), *command]
    return _run(command, cwd).stdout


def _number(pattern: str, text: str) -> float:
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{pattern!r} found {len(found)} times in:\n{text}"
    return float(found[0])


def _weights(path: Path) -> dict[str, np.ndarray]:
    from tinygrad_lab.serialization import load_checkpoint

    return load_checkpoint(path)[0]


# --- the recipes under mpiexec ----------------------------------------------------------------
MLP = ["train", "mnist-mlp", "--distributed", "--epochs", "1", "--limit", "2000",
       "--batch-size", "128"]
GPT = ["train", "shakespeare-gpt", "--distributed", "--steps", "6", "--batch-size", "8",
       "--context", "16", "--d-model", "32", "--heads", "2", "--layers", "1", "--warmup", "2",
       "--eval-every", "3", "--eval-batches", "2"]


def test_mnist_mlp_on_two_ranks_matches_one_process(tmp_path):
    two = cli(2, *MLP, "--save", "two.npz", cwd=tmp_path)
    one = cli(None, *MLP, "--save", "one.npz", cwd=tmp_path)
    banner = [line for line in two.splitlines() if line.startswith("mnist-mlp:")]
    assert len(banner) == 1 and "world 2" in banner[0] and "2 ranks x 64" in banner[0], two
    assert "world 1" in one.splitlines()[0], one
    assert two.count("Epoch 1/1") == 1 and two.count("checkpoint written to") == 1, two
    for pattern, tolerance in ((r"test loss (\d+\.\d+)", 2e-4),
                               (r"test accuracy (\d+\.\d+)", 2e-3)):
        assert abs(_number(pattern, two) - _number(pattern, one)) <= tolerance, (two, one)
    saved, reference = _weights(tmp_path / "two.npz"), _weights(tmp_path / "one.npz")
    assert saved.keys() == reference.keys()
    for k in saved:  # float32: the two ranks' mean of means against one mean
        np.testing.assert_allclose(saved[k], reference[k], rtol=1e-3, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npz", "two.npz"]


def test_shakespeare_gpt_on_two_ranks_matches_one_process(tmp_path):
    two = cli(2, *GPT, "--save", "gpt.npz", cwd=tmp_path, threads=False)
    one = cli(None, *GPT, cwd=tmp_path)
    banner = [line for line in two.splitlines() if line.startswith("shakespeare-gpt:")]
    assert len(banner) == 1 and "world 2" in banner[0], two
    per_rank = max(1, helpers.available_cores() // 2)  # the default: cores / local ranks
    plural = "s" if per_rank != 1 else ""  # the banner: "1 thread (Numba 1, BLAS 1)"
    assert f" {per_rank} thread{plural} (Numba {per_rank}, " in banner[0], two
    assert two.count("step      3:") == 1 and two.count("checkpoint written to") == 1, two
    val_two = _number(r"final val loss (\d+\.\d+)", two)
    assert abs(val_two - _number(r"final val loss (\d+\.\d+)", one)) <= 2e-4, (two, one)
    train_two = [float(x) for x in re.findall(r"train loss (\d+\.\d+)", two)]
    train_one = [float(x) for x in re.findall(r"train loss (\d+\.\d+)", one)]
    np.testing.assert_allclose(train_two, train_one, atol=2e-4)  # the global batch's loss
    sampled = _run([sys.executable, "-m", "tinygrad_lab", "sample", "gpt.npz", "--length",
                    "20"], tmp_path).stdout
    assert len(sampled) > 20


OTHERS = {  # the sampler in a recipe's own batches; (T, B) batches sliced along B
    "mnist-cnn": (["--epochs", "1", "--limit", "256", "--dropout", "0"],
                  r"test loss (\d+\.\d+)"),
    "shakespeare-lstm": (["--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "8",
                          "--seq-len", "16", "--hidden", "32", "--embed", "16",
                          "--eval-batches", "2", "--sample-length", "0"],
                         r"trained 6 steps in \d+ s; val loss (\d+\.\d+)"),
}


@pytest.mark.parametrize("target", sorted(OTHERS))
def test_other_targets_on_two_ranks_match_one_process(target, tmp_path):
    flags, final = OTHERS[target]
    two = cli(2, "train", target, "--distributed", *flags, cwd=tmp_path)
    one = cli(None, "train", target, "--distributed", *flags, cwd=tmp_path)
    assert two.count(f"{target}:") == 1 and "world 2" in two.splitlines()[0], two
    assert len(two.splitlines()) == len(one.splitlines()), (two, one)
    assert abs(_number(final, two) - _number(final, one)) <= 2e-4, (two, one)


# --- fit's agreement between ranks ---------------------------------------------------------------
AGREEMENT_SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tinygrad_lab as tl
    from tinygrad_lab import distributed as dist, nn, optim, train
    from tinygrad_lab.nn import functional as F

    world = dist.init()
    tl.manual_seed(world.rank)  # different initial weights: fit must broadcast rank 0's
    model = nn.Sequential(nn.Linear(4, 8, activation="tanh"), nn.Linear(8, 3))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(world.rank)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=6)
    mode = sys.argv[1]

    def loss_fn(m, batch):
        loss = F.cross_entropy(m(batch[0]), batch[1])
        if mode == "nan" and world.rank == 1 and stepper.loop.step == 2:
            loss = loss * float("nan")
        return loss

    def on_batch_end(index, logs):
        if mode == "stop" and world.rank == 1 and index == 2:
            stepper.loop.stop_training = True  # rank 1 only: every rank must stop here

    stepper = train.LambdaCallback(on_train_batch_end=on_batch_end)
    before = None
    losses = []
    result = {"rank": world.rank}
    try:
        history = train.fit(model, lambda e: [(x, y)] * 6, loss_fn, opt, epochs=2,
                            callbacks=[stepper, train.LambdaCallback(
                                on_train_batch_end=lambda i, logs: losses.append(
                                    logs["batch_loss"]))], distributed=True)
        result["epochs"] = len(history.epochs)
    except train.NonFiniteLoss as e:
        result["error"] = str(e)
    result["steps"] = stepper.loop.step
    result["losses"] = losses
    result["weights"] = float(sum(np.abs(p.numpy()).sum() for p in model.parameters()))
    with open(f"rank{world.rank}.json", "w") as f:  # one file each: stdout lines interleave
        json.dump(result, f)
''')


@pytest.mark.parametrize("mode", ["stop", "nan"])
def test_ranks_agree_on_a_stop_or_a_nan_asked_by_one(mode, tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(AGREEMENT_SCRIPT)
    _run([_mpiexec(), "-n", "2", sys.executable, str(script), mode], tmp_path)
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    out = f"{first}\n{second}"
    assert first["steps"] == second["steps"] == (3 if mode == "stop" else 2), out
    assert first["losses"] == second["losses"], out  # the global batch's, on every rank
    assert first["weights"] == second["weights"], out  # rank 0's start, the same updates
    if mode == "stop":
        assert first["epochs"] == second["epochs"] == 1
    else:
        assert "nan" in first["error"] and "nan" in second["error"], out
        assert "step 3" in first["error"], out


# --- in one process ------------------------------------------------------------------------------
def test_distributed_fit_in_one_process_equals_plain_fit():
    import tinygrad_lab as tl
    from tinygrad_lab import nn, optim, train
    from tinygrad_lab.nn import functional as F

    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=12)

    def run(distributed: bool) -> tuple[list[float], np.ndarray]:
        tl.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3))
        opt = optim.Adam(model.parameters(), lr=1e-2)
        history = train.fit(model, lambda e: [(x[:6], y[:6]), (x[6:], y[6:])],
                            lambda m, b: F.cross_entropy(m(b[0]), b[1]), opt, epochs=3,
                            distributed=distributed)
        return history.column("loss"), model.parameters()[0].numpy()

    (plain, w_plain), (world_one, w_one) = run(False), run(True)
    assert plain == world_one
    np.testing.assert_array_equal(w_plain, w_one)


def test_global_batch_must_divide_over_the_ranks(monkeypatch):
    import argparse

    monkeypatch.setattr(dist, "init", lambda: dist.World(rank=1, size=2, local_size=2))
    args = argparse.Namespace(distributed=True)
    share = recipes.ranks(args, 64)
    assert (share.rank, share.size, share.batch, share.rows) == (1, 2, 32, slice(32, 64))
    assert "global batch 64 = 2 ranks x 32" in share.banner()
    with pytest.raises(ValueError, match="--batch-size 63"):
        recipes.ranks(args, 63)
    assert recipes.ranks(argparse.Namespace(), 63).banner() == ""


# --- bench distributed and the projection ---------------------------------------------------------
def test_bench_distributed_quick(tmp_path):
    out = tmp_path / "results"
    text = _run([sys.executable, "-m", "tinygrad_lab", "bench", "distributed", "--quick",
                 "--out", str(out)], tmp_path).stdout
    payload = json.loads((out / "distributed.json").read_text())
    rows = payload["rows"]
    assert [(r["family"], r["ranks"]) for r in rows] == [("mlp", 1), ("mlp", 2)]
    one, two = rows
    assert one["bytes_per_step"] == 0 and one["comm_s"] == 0
    # every gradient once, plus one weight slot per bucket, in float32
    assert two["bytes_per_step"] == 4 * (two["params"] + 1)
    assert two["batch"] == one["batch"] == 2 * two["batch_per_rank"]
    for row in rows:
        assert row["step_s"] > 0 and row["items_per_s"] > 0 and 0 <= row["comm_share"] <= 1
    assert (out / "distributed.md").read_text() in text


def test_ring_allreduce_time_matches_a_hand_count():
    # the MNIST MLP: 407,050 float32 gradients = 1,628,200 bytes, 8 ranks, 10 Gbit/s, 20 us:
    # 2 * 7/8 * 1,628,200 B / 1.25e9 B/s = 2.27948 ms, plus 2 * 7 * 20 us = 0.28 ms
    assert allreduce.ring_bytes_per_rank(1_628_200, 8) == pytest.approx(2_849_350)
    t = allreduce.ring_allreduce_seconds(1_628_200, 8, 10e9 / 8, 20e-6)
    assert t == pytest.approx(2.55948e-3, rel=1e-9)
    assert allreduce.ring_allreduce_seconds(1_628_200, 1, 1.25e9, 20e-6) == 0.0
    # 60 MB in 25 MB buckets: three all-reduces, each paying the latency 2 (N-1) alpha
    three = allreduce.ring_allreduce_seconds(60e6, 2, 1e9, 1e-3, bucket_bytes=25e6)
    assert three == pytest.approx(60e6 / 1e9 + 3 * 2 * 1e-3)


def test_projection_table_lists_every_recipe_model():
    proj = allreduce.projection(measure=False)
    assert [r["params"] for r in proj["rows"]][0] == 407_050
    text = allreduce.markdown(proj)
    for name in recipes.RECIPES:
        assert name in text
    mlp_8 = proj["rows"][0]["networks"]["10 Gbit/s Ethernet"]["8"]["seconds"]
    assert mlp_8 == pytest.approx(2.55948e-3)
    assert "| 2.56 |" in text
