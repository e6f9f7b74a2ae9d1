"""`tinygrad-lab` / `python -m tinygrad_lab`: bad arguments give one line on stderr and a non-zero
exit; `kernels` lists; `info` reports; a short real MNIST run trains to > 80% test accuracy. Run
as a subprocess (what a user sees) and in-process through `main()`."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tinygrad_lab import helpers
from tinygrad_lab.cli import main
from tinygrad_lab.kernels import CPU_KERNELS
from tinygrad_lab.serialization import load_checkpoint

SHORT_RUN = ["train", "mnist-mlp", "--epochs", "1", "--limit", "2000", "--batch-size", "128"]

# (argv, a word the error line must contain, exit status)
BAD_ARGUMENTS = [
    (["train", "mnist-mlp", "--epochs", "x"], "--epochs", 2),
    (["train", "nope"], "nope", 2),
    (["--threads", "0", "train", "mnist-mlp"], "--threads", 2),
    (["train", "mnist-mlp", "--epochs", "0"], "--epochs", 1),
    (["train", "mnist-mlp", "--lr", "nan"], "--lr", 2),  # non-finite: refused at parsing
]
BAD_IDS = ["epochs-not-int", "unknown-target", "zero-threads", "zero-epochs", "lr-nan"]


def cli(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinygrad_lab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture
def restore_switches() -> Iterator[None]:
    """main() flips process-wide switches (--reference); put them back for the next test."""
    kernels = helpers.kernels_enabled()
    yield
    helpers.set_kernels(kernels)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


# --- as a user runs it ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, word, status", BAD_ARGUMENTS, ids=BAD_IDS)
def test_bad_arguments_exit_nonzero_with_one_line(argv, word, status, tmp_path):
    result = cli(*argv, cwd=str(tmp_path))
    assert result.returncode == status, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("tinygrad-lab") and "error" in line and word in line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_kernels_lists_the_registered_kernels(tmp_path):
    result = cli("kernels", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(CPU_KERNELS)
    for line, (name, target) in zip(lines, sorted(CPU_KERNELS.items())):
        assert line.split() == [name, target]


def test_short_mnist_run_trains(tmp_path):
    result = cli(*SHORT_RUN, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "test accuracy" in out and "samples/s" in out
    accuracy = float(re.search(r"test accuracy (\d+\.\d+)", out).group(1))
    assert accuracy > 0.8, out


# --- in-process, through main() -------------------------------------------------------------------
@pytest.mark.parametrize("argv, word, status", BAD_ARGUMENTS, ids=BAD_IDS)
def test_main_bad_arguments(argv, word, status, capsys, restore_switches):
    if status == 2 and "--threads" not in argv:  # argparse itself rejects these
        with pytest.raises(SystemExit) as info:
            main(argv)
        code = info.value.code
    else:
        code = main(argv)
    assert code == status
    captured = capsys.readouterr()
    assert word in one_line(captured.err)
    assert captured.out == ""


@pytest.mark.parametrize(
    "argv, word",
    [
        (["train", "mnist-mlp", "--batch-size", "-1"], "--batch-size"),
        (["train", "mnist-mlp", "--limit", "-5"], "--limit"),
        (["train", "mnist-mlp", "--validation-split", "1.5"], "--validation-split"),
        (["sample", "no-such-checkpoint.npz"], "no-such-checkpoint.npz"),
    ],
)
def test_main_rejects_bad_values_in_one_line(argv, word, capsys, restore_switches):
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert word in one_line(captured.err)
    assert captured.out == ""


def test_main_without_a_command_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "command" in one_line(capsys.readouterr().err)


def test_main_kernels(capsys):
    assert main(["kernels"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(CPU_KERNELS)


def test_main_kernels_of_another_device_type(capsys):
    from tinygrad_lab.backends import DEVICES

    assert main(["kernels", "--device", "cuda"]) == 0  # listing needs no GPU
    captured = capsys.readouterr()
    table = sorted(DEVICES["cuda"].kernels.items())
    assert [line.split() for line in captured.out.splitlines()] == [[n, t] for n, t in table]
    if not DEVICES["cuda"].kernels:
        assert "no kernels registered for cuda" in captured.err
    with pytest.raises(SystemExit) as info:
        main(["kernels", "--device", "tpu"])
    assert info.value.code == 2 and "--device" in one_line(capsys.readouterr().err)


def test_main_info_prints_versions_devices_kernels_and_threads(capsys, restore_switches):
    import tinygrad_lab
    from tinygrad_lab.backends import DEVICES

    assert main(["--reference", "info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"tinygrad_lab {tinygrad_lab.__version__}, Python ")
    for name in DEVICES:  # each registered device, available or with the reason why not
        assert re.search(rf"^device {name}: (available|unavailable: .+)$", out, re.M), name
    assert "device cpu: available" in out
    assert f"kernels: off (reference path); {len(CPU_KERNELS)} CPU kernels registered" in out
    assert f"threads: {helpers.num_threads()}" in out


def test_main_short_reference_run_and_save(tmp_path, capsys, restore_switches):
    path = tmp_path / "mlp.npz"
    argv = ["--reference", "train", "mnist-mlp", "--epochs", "1", "--limit", "1000"]
    assert main([*argv, "--hidden", "64", "--lr", "5e-3", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kernels off" in out
    assert float(re.search(r"test accuracy (\d+\.\d+)", out).group(1)) > 0.7
    assert path.exists()
    state, meta = load_checkpoint(path)
    assert state["layers.0.linear.weight"].shape == (784, 64) and meta["recipe"] == "mnist-mlp"
    # a checkpoint of a recipe that does not generate text cannot be sampled from: one line
    assert main(["sample", str(path)]) == 1
    assert str(path) in one_line(capsys.readouterr().err)


def test_main_unwritable_save_path_is_one_line(tmp_path, capsys, restore_switches):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = ["--reference", "train", "mnist-mlp", "--epochs", "1", "--limit", "256"]
    assert main([*argv, "--hidden", "16", "--save", str(blocker / "mlp.npz")]) == 1
    assert "a-file" in one_line(capsys.readouterr().err)
