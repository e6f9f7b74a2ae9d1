"""benchmarks/gpu_check.py end to end on the stand-in device, as a subprocess (nothing under
tests/ imports benchmarks/): every section's code path runs in CI, so the one-shot GPU run meets
no Python error; the report files, the argument checks and the time budget are checked here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TINYGRAD_LAB_THREADS": "1", "GPU_CHECK_TRACEBACKS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu_check")
    return out, _run(str(out), "--device", "standin")


def test_dry_run_passes_every_check_and_writes_both_reports(dry_run) -> None:
    out, done = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    assert report["device"] == "standin"
    assert report["counts"]["fail"] == 0
    names = {row["name"] for row in report["rows"]}
    for expected in ("op softmax, log_softmax", "layer LayerNorm", "optimizer AdamW two groups",
                     "model GPT train step", "model CharLSTM train step", "GEMM float32",
                     "device copy bandwidth", "MLP ours", "MLP PyTorch eager", "gelu_forward",
                     "kernel sgd_step", "kernel softmax_cross_entropy_forward"):
        assert expected in names, expected
    sections = {row["section"] for row in report["rows"]}
    assert sections == {"correctness", "hardware", "training", "bandwidth", "scaling"}
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# GPU check on `standin`")
    assert markdown.count("| check | status | value | detail |") == 5
    assert len([line for line in markdown.splitlines() if line.startswith("| ")]) == \
        len(report["rows"]) + 2 * 5  # a line per row plus each table's two header lines


def test_a_failed_check_is_a_row_and_the_exit_status(tmp_path: Path) -> None:
    done = _run(str(tmp_path), "--device", "cuda:7", "--sections", "correctness", timeout=120)
    assert done.returncode == 1  # no such GPU here (nor, in CI, any): one failed row, no crash
    report = json.loads((tmp_path / "results.json").read_text())
    (row,) = report["rows"]
    assert row["status"] == "fail" and row["name"] == "device"
    assert "**FAIL**" in (tmp_path / "results.md").read_text()


def test_a_spent_budget_skips_the_rest(tmp_path: Path) -> None:
    done = _run(str(tmp_path), "--device", "standin", "--budget", "0.001", "--no-torch",
                "--sections", "correctness", "training", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "results.json").read_text())
    statuses = {row["status"] for row in report["rows"]}
    assert statuses <= {"skip"} and report["counts"]["skip"] > 10


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "--budget must be > 0"),
    (["--sections", "nope"], "invalid choice"),
    ([], "the following arguments are required: out"),
])
def test_bad_arguments_exit_2_naming_the_argument(args: list[str], message: str) -> None:
    done = _run(*(["somewhere"] if args else []), *args, timeout=60)
    assert done.returncode == 2 and message in done.stderr


def test_runs_from_a_checkout_that_is_not_importable_as_installed(tmp_path: Path) -> None:
    """With the install's import finder gone (as on a fresh GPU machine whose pip installed for
    another interpreter), the script still finds the checkout's tinygrad_lab and its kernels."""
    code = (
        "import runpy, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path  # the install's finder is a class\n"
        "                    if 'editable' not in getattr(f, '__module__', '')]\n"
        f"sys.argv = [{str(SCRIPT)!r}, {str(tmp_path / 'out')!r}, '--device', 'standin',\n"
        "            '--sections', 'correctness']\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["counts"]["fail"] == 0 and report["counts"]["pass"] > 0
