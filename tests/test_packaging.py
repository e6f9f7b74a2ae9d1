"""The built wheel: `kernels/` ships as `tinygrad_lab.kernels` and never as a top-level `kernels`,
the shipped data and py.typed are inside, and the unpacked wheel works from a folder outside the
checkout. Also: importing tinygrad_lab compiles (imports) no kernel module."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 300
MNIST = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
# what the build reads; copied so that the build never writes build/ or *.egg-info into the repo
SOURCES = [
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "MANIFEST.in",
    "setup.cfg",
    "tinygrad_lab",
    "kernels",
]


def _version(distribution: str) -> tuple[int, ...] | None:
    """The installed distribution's (major, minor), from its metadata (not from what a folder in
    the current directory might shadow), or None."""
    try:
        raw = version(distribution)
    except PackageNotFoundError:
        return None
    return tuple(int(p) for p in raw.split(".")[:2] if p.isdigit())


def _build_command(outdir: Path) -> list[str]:
    """pip wheel without isolation when the venv's setuptools can build a wheel by itself,
    else `python -m build` (an isolated environment with setuptools from the index)."""
    setuptools = _version("setuptools")
    can_wheel = setuptools is not None and (
        setuptools >= (70, 1) or (setuptools >= (64,) and _version("wheel") is not None)
    )
    if can_wheel:
        return [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(outdir),
        ]
    if _version("build") is not None:
        return [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir)]
    pytest.skip("no wheel build tooling: need setuptools>=64 with wheel, or `build` (dev extra)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src, out = root / "src", root / "dist"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.nbi", "*.nbc")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, src / name)
    command = _build_command(out)
    try:
        result = subprocess.run(
            command, cwd=src, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"building the wheel took over {BUILD_TIMEOUT_S} s: {' '.join(command)}")
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    wheels = list(out.glob("tinygrad_lab-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


@pytest.fixture(scope="module")
def unpacked(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


def test_wheel_maps_kernels_under_the_package(names):
    assert "tinygrad_lab/kernels/__init__.py" in names
    assert "tinygrad_lab/kernels/cuda/__init__.py" in names
    top_level = {n.split("/")[0] for n in names}
    assert "kernels" not in top_level
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"tinygrad_lab"}
    # every Python file of the kernels/ folder ships (an unlisted sub-package would be lost)
    for path in (REPO / "kernels").rglob("*.py"):
        rel = path.relative_to(REPO / "kernels").as_posix()
        assert f"tinygrad_lab/kernels/{rel}" in names, rel


def test_wheel_ships_every_module_of_the_package(names):
    """pyproject lists the sub-packages by hand: one left out would be missing from a wheel
    (an editable install would still find it, so only a built wheel shows it)."""
    for path in (REPO / "tinygrad_lab").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        assert rel in names, f"{rel} is not in the wheel: add its package to pyproject.toml"


def test_wheel_ships_data_and_type_markers(names):
    for name in MNIST:
        assert f"tinygrad_lab/data/mnist/{name}" in names
    assert "tinygrad_lab/data/tinyshakespeare/input.txt" in names
    assert "tinygrad_lab/py.typed" in names
    assert "tinygrad_lab/kernels/py.typed" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_wheel_declares_the_console_script(names, wheel):
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(entry_points).decode()
    assert "tinygrad-lab = tinygrad_lab.cli:main" in text


CHECK_UNPACKED = r"""
import importlib, json, sys

import tinygrad_lab
assert not [m for m in sys.modules if m.startswith("tinygrad_lab.kernels.")], "kernels imported"
import tinygrad_lab.kernels as k
report = {"package": tinygrad_lab.__file__, "kernels": k.__file__, "targets": []}
for name, target in sorted(k.CPU_KERNELS.items()):
    module, function = target.split(":")
    mod = importlib.import_module(f"tinygrad_lab.kernels.{module}")
    assert callable(getattr(mod, function)), target
    report["targets"].append(mod.__file__)
try:
    import kernels
except ImportError:
    report["top_level_kernels"] = None
else:
    report["top_level_kernels"] = kernels.__file__
from tinygrad_lab.datasets import load_mnist
(xtr, ytr), (xte, yte) = load_mnist()
report["mnist"] = [list(a.shape) for a in (xtr, ytr, xte, yte)] + [str(xtr.dtype)]
print(json.dumps(report))
"""


def test_unpacked_wheel_works_outside_the_checkout(unpacked, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    result = subprocess.run(
        [sys.executable, "-c", CHECK_UNPACKED],
        cwd=tmp_path,  # a fresh folder: the repository is not on sys.path
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    site = unpacked.resolve()
    assert Path(report["package"]).resolve().is_relative_to(site)
    assert Path(report["kernels"]).resolve() == site / "tinygrad_lab" / "kernels" / "__init__.py"
    assert all(
        Path(t).resolve().is_relative_to(site / "tinygrad_lab" / "kernels")
        for t in report["targets"]
    )
    assert report["top_level_kernels"] is None, "`import kernels` must fail"
    assert report["mnist"] == [[60000, 28, 28], [60000], [10000, 28, 28], [10000], "uint8"]


def test_importing_the_package_compiles_no_kernel(tmp_path):
    """From the development install: `import tinygrad_lab` loads no kernel module (and so
    compiles nothing); the first kernel module loads on first use."""
    code = (
        "import sys, tinygrad_lab\n"
        "print(sorted(m for m in sys.modules if m.startswith('tinygrad_lab.kernels.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_development_install_hides_top_level_kernels(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import kernels"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_a_checkout_without_its_install_still_finds_the_kernels(tmp_path):
    """With setuptools' editable finder gone (a checkout on sys.path, or a pip that installed
    for another interpreter), tinygrad_lab.kernels still resolves to the checkout's kernels/,
    submodules included (and it is the same module, not a second copy of it)."""
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path  # the install's finder is a class\n"
        "                    if 'editable' not in getattr(f, '__module__', '')]\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        "import tinygrad_lab.kernels.cuda._common as c, tinygrad_lab.kernels as k\n"
        "print(k.__file__, c.__file__)\n"
        "from tinygrad_lab.backends import DEVICES\n"
        "package = DEVICES['cuda'].kernel_package\n"
        "print(package, sys.modules[package] is k.cuda)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    files, verdict = result.stdout.strip().splitlines()
    assert files.split() == [str(root / "kernels" / "__init__.py"),
                             str(root / "kernels" / "cuda" / "_common.py")]
    assert verdict == "tinygrad_lab.kernels.cuda True"

