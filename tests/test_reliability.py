"""The reliability corpus: bad inputs and hostile environments, each answered by one clear line
(or one exception naming the problem), never a traceback, a hang or a silent wrong answer.

`CORPUS` is the table: case, input, expected error type (an exception class for Python calls,
an exit status for the command line) and a phrase of its message. Command-line cases run
`main()` in-process and require exactly one line on stderr; import-time cases run a fresh
interpreter. Below the table: thread capping and reporting, the Numba cache fallback for a
read-only install, and initialisation without float64 temporaries.

Interruption and resume under kill (a process killed mid-save, `--resume` after it, SIGINT/SIGTERM
exit codes of real training runs) run as subprocesses in tests/test_checkpoints.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinygrad_lab import helpers, nn, optim, recipes
from tinygrad_lab.cli import main
from tinygrad_lab.datasets import DatasetError, read_idx, write_idx
from tinygrad_lab.nn import init
from tinygrad_lab.random import generator, manual_seed
from tinygrad_lab.serialization import load, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


# --- inputs the table refers to by name (built under tmp_path) ------------------------------------
def _huge_npz(path: Path) -> Path:
    """An .npz whose weight's .npy header announces 4 TiB (followed by 64 bytes)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    meta = io.BytesIO()
    np.save(meta, np.array(json.dumps({"recipe": "shakespeare-gpt"})))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("state/w.npy", header.getvalue() + b"\0" * 64)
        z.writestr("__meta__.npy", meta.getvalue())
    return path


def _checkpoint(meta: dict[str, Any]) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        save_checkpoint(path, {"w": np.zeros(3, np.float32)}, meta)
        return path
    return build


def _truncated(path: Path) -> Path:
    save_checkpoint(path, {"w": np.arange(1000, dtype=np.float32)}, {"recipe": "mnist-mlp"})
    path.write_bytes(path.read_bytes()[:300])
    return path


def _pickled(path: Path) -> Path:
    np.savez(path, evil=np.array([{"a": 1}], dtype=object))  # loading would need a pickle
    return path


def _corrupt_idx(path: Path) -> Path:
    write_idx(path, np.arange(12, dtype=np.uint8).reshape(3, 4), compress=False)
    path.write_bytes(path.read_bytes()[:14])  # the header promises 12 bytes, 2 are there
    return path


def _not_gzip(path: Path) -> Path:
    write_idx(path, np.arange(12, dtype=np.uint8).reshape(3, 4), compress=False)
    return path


FILES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "{huge}": ("huge.npz", _huge_npz),
    "{partial}": ("partial.npz", _checkpoint({"recipe": "shakespeare-gpt"})),
    "{wrong_config}": ("wrong.npz", _checkpoint({"recipe": "shakespeare-gpt", "config": [1, 2],
                                                 "vocab": "ab"})),
    "{partial_lstm}": ("lstm.npz", _checkpoint({"recipe": "shakespeare-lstm",
                                                "config": {"embed": 4}, "vocab": "abc"})),
    "{foreign}": ("foreign.npz", _checkpoint({"written_by": "someone else"})),
    "{truncated}": ("truncated.npz", _truncated),
    "{pickled}": ("pickled.npz", _pickled),
    "{corrupt_idx}": ("data.idx", _corrupt_idx),
    "{not_gzip}": ("raw.gz", _not_gzip),
}


@dataclass(frozen=True)
class Case:
    case: str
    input: Any  # argv (list) or f(monkeypatch) for the CLI, f(files) for Python, {"ENV": value}
    expected: Any  # an exception class, or an exit status
    phrase: str


def _noncontiguous_sum(files: dict[str, str]) -> None:
    from tinygrad_lab import Tensor

    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2].T  # strided and transposed
    x = Tensor(view, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * view)  # right answer, no error
    raise AssertionError("non-contiguous input: correct result")


def _interrupted(argv: list[str]) -> Callable[[pytest.MonkeyPatch], int]:
    """Ctrl-C inside a recipe: main() returns 130 with one line."""
    def run(monkeypatch: pytest.MonkeyPatch) -> int:
        def stop(args: Any) -> None:
            raise KeyboardInterrupt
        monkeypatch.setattr(recipes.get("mnist-mlp"), "run", stop)
        return main(argv)
    return run


MLP = ["--reference", "train", "mnist-mlp", "--epochs", "1", "--limit", "100"]

CORPUS: list[Case] = [
    # memory
    Case("hidden-100000000", [*MLP, "--hidden", "100000000"], 1, "out of memory"),
    Case("npy-header-4-tib", ["sample", "{huge}"], 1, "out of memory"),
    # checkpoints handed to `sample`
    Case("sample-partial-metadata", ["sample", "{partial}"], 1,
         "metadata does not describe a shakespeare-gpt model"),
    Case("sample-config-not-a-dict", ["sample", "{wrong_config}"], 1,
         "metadata does not describe a shakespeare-gpt model"),
    Case("sample-partial-lstm-metadata", ["sample", "{partial_lstm}"], 1, "missing 'hidden'"),
    Case("sample-foreign-metadata", ["sample", "{foreign}"], 1, "cannot sample text"),
    Case("sample-truncated-checkpoint", ["sample", "{truncated}"], 1, "not a readable"),
    Case("sample-missing-file", ["sample", "nope.npz"], 1, "does not exist"),
    Case("temperature-nan", ["sample", "{partial}", "--temperature", "nan"], 1,
         "--temperature must be a finite number > 0"),
    Case("temperature-inf", ["sample", "{partial}", "--temperature", "inf"], 1,
         "--temperature must be a finite number > 0"),
    # arguments
    Case("context-longer-than-text", ["train", "shakespeare-gpt", "--context", "10000000",
                                      "--steps", "1"], 1, "longer than the text"),
    Case("threads-zero", ["--threads", "0", "info"], 2, "--threads must be >= 1"),
    Case("ctrl-c", _interrupted(MLP), 130, "interrupted"),
    # environment at import: one warning, the default, the import goes on
    Case("env-threads-not-int", {"TINYGRAD_LAB_THREADS": "many"}, 0, "is not an integer"),
    Case("env-threads-negative", {"TINYGRAD_LAB_THREADS": "-3"}, 0, "must be >= 0"),
    Case("env-debug-not-int", {"DEBUG": "verbose"}, 0, "DEBUG='verbose' is not an integer"),
    Case("env-kernels-not-int", {"TINYGRAD_LAB_KERNELS": "yes"}, 0,
         "TINYGRAD_LAB_KERNELS='yes' is not an integer"),
    # the Python API
    Case("adam-beta1-1.5", lambda f: optim.Adam(nn.Linear(2, 2).parameters(), betas=(1.5, 0.9)),
         ValueError, "betas must be two numbers in [0, 1)"),
    Case("adamw-beta2-nan", lambda f: optim.AdamW(nn.Linear(2, 2).parameters(),
                                                betas=(0.9, float("nan"))),
         ValueError, "betas"),
    Case("conv2d-zero-in-channels", lambda f: nn.Conv2d(0, 4, 3), ValueError,
         "in_channels must be a positive integer"),
    Case("conv2d-zero-out-channels", lambda f: nn.Conv2d(3, 0, 3), ValueError,
         "out_channels must be a positive integer"),
    Case("set-num-threads-zero", lambda f: helpers.set_num_threads(0), ValueError, ">= 1"),
    Case("truncated-checkpoint", lambda f: load(f["{truncated}"]), ValueError, "not a readable"),
    Case("crafted-pickle-refused", lambda f: load(f["{pickled}"]), ValueError, "not a readable"),
    Case("corrupt-idx", lambda f: read_idx(f["{corrupt_idx}"]), DatasetError, "data.idx"),
    Case("idx-not-gzip", lambda f: read_idx(f["{not_gzip}"]), DatasetError, "not a gzip file"),
    Case("non-contiguous-input", _noncontiguous_sum, AssertionError, "correct result"),
]


def _fill_in(value: Any, files: dict[str, str]) -> Any:
    if isinstance(value, str):
        return files.get(value, value)
    if isinstance(value, list):
        return [_fill_in(v, files) for v in value]
    return value


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return {key: str(build(tmp_path / name)) for key, (name, build) in FILES.items()}


@pytest.fixture
def restore() -> Iterator[None]:
    """main() and these cases flip process-wide switches; put them back."""
    kernels, threads = helpers.kernels_enabled(), helpers.num_threads()
    yield
    helpers.set_kernels(kernels)
    helpers.set_num_threads(threads)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def _python(code: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=300, cwd=ROOT, **kw)


@pytest.mark.parametrize("case", CORPUS, ids=[c.case for c in CORPUS])
def test_corpus(case: Case, files: dict[str, str], capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch, restore: None, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    if isinstance(case.input, dict):  # environment variables read at import
        for name in ("TINYGRAD_LAB_THREADS", "DEBUG", "TINYGRAD_LAB_KERNELS"):
            monkeypatch.delenv(name, raising=False)
        done = _python("import tinygrad_lab", case.input)
        assert done.returncode == case.expected, done.stderr
        assert case.phrase in _one_line(done.stderr)
        return
    if isinstance(case.expected, int):  # the command line
        if callable(case.input):
            status = case.input(monkeypatch)
        else:
            status = main(_fill_in(case.input, files))
        assert status == case.expected
        assert case.phrase in _one_line(capsys.readouterr().err)
        return
    with pytest.raises(case.expected) as info:
        case.input(files)
    assert case.phrase in str(info.value)


def test_corpus_covers_the_issue() -> None:
    assert len(CORPUS) >= 25
    assert len({c.case for c in CORPUS}) == len(CORPUS)


def test_kernels_into_a_closed_pipe_is_silent() -> None:
    """`tinygrad-lab kernels | head`: the reader leaves; no 'Broken pipe' traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "tinygrad_lab", "kernels"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes: every write meets EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


# --- threads ------------------------------------------------------------------------------------
def test_threads_capped_at_available_cores(capsys: pytest.CaptureFixture[str],
                                           restore: None) -> None:
    cores = helpers.available_cores()
    helpers.set_num_threads(cores + 62)
    line = _one_line(capsys.readouterr().err)
    assert f"{cores + 62} threads asked for" in line and f"using {cores}" in line
    assert helpers.num_threads() == cores
    numba_count, blas = helpers.effective_threads()
    assert numba_count == cores and blas in (cores, None)


def test_cli_threads_64_banner_shows_effective_counts(capsys: pytest.CaptureFixture[str],
                                                      restore: None) -> None:
    cores = helpers.available_cores()
    assert main(["--reference", "--threads", "64", "info"]) == 0
    captured = capsys.readouterr()
    if cores < 64:
        assert f"using {cores}" in _one_line(captured.err)
    numba_count, blas = helpers.effective_threads()
    assert f"threads: {helpers.num_threads()} (Numba {numba_count}, BLAS {blas})" in captured.out


def test_thread_banner_names_both_pools(restore: None) -> None:
    helpers.set_num_threads(1)
    assert helpers.thread_banner() == "1 thread (Numba 1, BLAS 1)" or \
        helpers.thread_banner().startswith("1 thread (Numba 1, BLAS ")


@pytest.mark.parametrize("var", ["OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "TINYGRAD_LAB_THREADS"])
def test_num_threads_honours_the_environment(var: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "TINYGRAD_LAB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    done = _python("import numpy, tinygrad_lab.helpers as h; import tinygrad_lab; "
                   "print(h.num_threads(), *h.effective_threads())", {var: "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "1"], done.stdout


def test_thread_pool_waiting_defaults_and_what_the_user_set_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """import tinygrad_lab makes idle OpenMP threads sleep after a short spin and OpenBLAS's
    spin briefly (helpers.apply_thread_env), unless the user chose otherwise."""
    names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    code = f"import os, tinygrad_lab; print(*(os.environ.get(n) for n in {names!r}))"
    done = _python(code, {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["PASSIVE", "3000", "4"]
    done = _python(code, {"GOMP_SPINCOUNT": "0", "OMP_WAIT_POLICY": "ACTIVE"})
    assert done.stdout.split() == ["ACTIVE", "0", "4"]


@pytest.mark.skipif(helpers.available_cores() < 2, reason="needs 2 cores")
def test_smaller_numba_pool_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYGRAD_LAB_THREADS", raising=False)
    done = _python("import tinygrad_lab.helpers as h; h.set_num_threads(2); "
                   "print(h.thread_banner())", {"NUMBA_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "kernels run on 1, BLAS on 2" in _one_line(done.stderr)
    assert done.stdout.startswith("2 threads (Numba 1, ")


# --- Numba's cache on a read-only install --------------------------------------------------------
KERNELS_DIR = str(Path(__import__("tinygrad_lab.kernels").kernels.__path__[0]))


def _read_only(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if str(p).startswith(package)
                        else real(p, m, *a, **k))


def test_cache_chooser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = str(tmp_path / "site" / "kernels")
    os.makedirs(package)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert helpers.choose_numba_cache(package) is None  # writable: Numba's own __pycache__
    _read_only(monkeypatch, package)
    assert helpers.choose_numba_cache(package) == str(tmp_path / "xdg" / "tinygrad_lab" / "numba")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # HOME=/-like: not creatable
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "tmp"))
    assert helpers.choose_numba_cache(package) == str(tmp_path / "tmp" /
                                                       f"tinygrad_lab-{os.getuid()}" / "numba")
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "file" / "tmp"))
    assert helpers.choose_numba_cache(package) == ""  # nothing writable: no cache
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert helpers.choose_numba_cache(package) is None  # the user's choice stands


def test_kernels_compiled_from_other_sources_are_dropped(tmp_path: Path) -> None:
    """Numba's cache checks only a kernel's own file; a changed helper module (_math.py) must
    still retire every cached kernel, or callers would run machine code of the old helper."""
    package, cache = tmp_path / "kernels", tmp_path / "cache" / "deep"
    package.mkdir()
    cache.mkdir(parents=True)
    (package / "_math.py").write_text("def exp(x): return x\n")
    (package / "softmax.py").write_text("from ._math import exp\n")
    compiled = [cache / "softmax._row-10.py311.nbi", cache / "softmax._row-10.py311.1.nbc"]
    for f in compiled:
        f.write_text("machine code")
    (cache / "notes.txt").write_text("kept")
    helpers.drop_stale_kernel_cache(str(tmp_path / "cache"), str(package))  # no record: drop
    assert not any(f.exists() for f in compiled) and (cache / "notes.txt").exists()
    for f in compiled:
        f.write_text("machine code")
    helpers.drop_stale_kernel_cache(str(tmp_path / "cache"), str(package))  # same sources: keep
    assert all(f.exists() for f in compiled)
    (package / "_math.py").write_text("def exp(x): return 2 * x\n")  # only the helper changes
    helpers.drop_stale_kernel_cache(str(tmp_path / "cache"), str(package))
    assert not any(f.exists() for f in compiled)
    record = tmp_path / "cache" / helpers.KERNEL_FINGERPRINT_FILE
    assert record.read_text().strip() == helpers.kernel_fingerprint(str(package))


READ_ONLY_RUN = """
import os, sys, tempfile
real = os.access
os.access = lambda p, m, *a, **k: False if str(p).startswith({kernels!r}) else real(p, m, *a, **k)
if sys.argv[1] == "none":
    tempfile.gettempdir = lambda: {blocked!r}
import numpy as np
from tinygrad_lab import Tensor
x = Tensor(np.linspace(-1, 1, 300000, dtype=np.float32), requires_grad=True)
y = x.relu().sum()
y.backward()
print(round(float(y.numpy())), os.environ.get("NUMBA_CACHE_DIR"))
"""


@pytest.mark.parametrize("where", ["tmp", "none"])
def test_read_only_install_with_home_slash_runs_kernels(where: str, tmp_path: Path) -> None:
    """A read-only package and HOME=/ (docker run --user 1000): the kernel still runs, after one
    warning, caching in a temp directory or not at all."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR",
                                                            "TINYGRAD_LAB_KERNELS")}
    env.update(HOME="/", XDG_CACHE_HOME=str(blocked), TMPDIR=str(tmp_path))
    code = READ_ONLY_RUN.format(kernels=KERNELS_DIR, blocked=str(blocked / "tmp"))
    done = subprocess.run([sys.executable, "-c", code, where], env=env, capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    line = _one_line(done.stderr)
    total, cache = done.stdout.split()
    assert int(total) == 75000
    if where == "tmp":
        assert "cached in" in line and cache.startswith(str(tmp_path))
        assert any(Path(cache).rglob("*.nbi"))  # Numba wrote its index there
    else:
        assert "without a cache" in line and cache == "None"


# --- initialisation -------------------------------------------------------------------------------
def test_init_values_bit_identical_to_one_float64_draw() -> None:
    for shape in [(3,), (700, 900), (2, 3, 4, 5), (init._CHUNK + 1,)]:
        for dtype in (np.float32, np.float64):
            manual_seed(7)
            a = generator().uniform(-0.1, 0.1, size=shape).astype(dtype)
            b = (generator().standard_normal(size=shape) * 0.3).astype(dtype)
            manual_seed(7)
            assert np.array_equal(init._uniform(0.1, shape, dtype), a)
            assert np.array_equal(init._normal(0.3, shape, dtype), b)


@pytest.mark.parametrize("name", sorted(init.INITIALISERS))
def test_initialisers_build_no_float64_temporary(name: str) -> None:
    """Linear(5000, 40000)'s weight peaked at 2.9x its size (a float64 draw, then a cast); the
    initialisers now peak at the float32 result plus one 2 MiB block."""
    shape = (2000, 4000)
    tracemalloc.start()
    try:
        weight = init.get(name)(2000, 4000, shape)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert weight.dtype == np.float32 and weight.shape == shape
    assert peak < weight.nbytes + 2 * init._CHUNK * 8, peak / weight.nbytes
