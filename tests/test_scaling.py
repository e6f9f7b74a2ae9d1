"""The scaling sweep: the fits recover known laws exactly; `bench scaling --quick` (all three
families, PyTorch beside ours when installed) writes finite rows, fits and real plots; a second
run resumes; `estimate` prints memory and epoch time from the sweep."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_lab.scaling import fit, grids
from tinygrad_lab.scaling.sweep import csv_text

HAVE_TORCH = importlib.util.find_spec("torch") is not None
QUICK_SIZES = sum(len(grids.grid(f, quick=True)) for f in grids.FAMILIES)


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tinygrad_lab", "--threads", "2", *args],
                          capture_output=True, text=True, timeout=timeout)


# --- fits: pure functions on synthetic data ----------------------------------------------------
def test_overhead_rate_recovers_overhead_and_rate_exactly():
    flops = np.array([1e6, 1e7, 1e8, 1e9, 1e10])
    seconds = 2e-3 + flops / 40e9
    cost = fit.overhead_rate(flops, seconds)
    assert cost.overhead_s == pytest.approx(2e-3, rel=1e-9)
    assert cost.rate_flops == pytest.approx(40e9, rel=1e-9)
    share = 2e-3 / cost.seconds(cost.flops_where_overhead_is(0.1))
    assert share == pytest.approx(0.1, rel=1e-9)


def test_overhead_rate_rejects_a_single_size():
    with pytest.raises(ValueError, match="two steps"):
        fit.overhead_rate([1e6, 1e6], [1.0, 1.1])


def test_power_law_recovers_exponent_and_coefficient():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    law = fit.power_law(x, 3.5 * x**0.75)
    assert law.exponent == pytest.approx(0.75, rel=1e-12)
    assert law.coefficient == pytest.approx(3.5, rel=1e-9)
    assert law.inverse(float(law(2e4))) == pytest.approx(2e4, rel=1e-9)


def test_through_origin_and_linear():
    x = np.array([1.0, 2.0, 5.0])
    assert fit.through_origin(x, 16 * x) == pytest.approx(16)
    assert fit.linear(x, 3 + 2 * x) == pytest.approx((3, 2))


def test_crossovers_interpolate_on_log_axes():
    # ratio = (x / 1e5) ** 0.5: crosses 1 at x = 1e5, between the 2nd and 3rd points
    x = np.array([1e3, 1e4, 1e6, 1e7])
    assert fit.crossovers(x, (x / 1e5) ** 0.5) == pytest.approx([1e5], rel=1e-9)
    assert fit.crossovers(x, np.full(4, 2.0)) == []
    # two crossings, unsorted input
    assert len(fit.crossovers([4.0, 1.0, 2.0, 3.0], [0.5, 0.5, 2.0, 0.5])) == 2
    # a ratio wavering within the band around 1 is a tie, not a crossing
    assert len(fit.crossovers([1.0, 2.0, 3.0], [0.999, 1.001, 0.998])) == 2
    assert fit.crossovers([1.0, 2.0, 3.0], [0.999, 1.001, 0.998], band=0.02) == []


def test_quick_grid_sizes_are_distinct_and_small():
    for family in grids.FAMILIES:
        sizes = grids.grid(family, quick=True)
        assert len({s.key for s in sizes}) == len(sizes) == 3
    default = [s for f in grids.FAMILIES for s in grids.grid(f)]
    assert len({s.key for s in default}) == len(default)


def test_csv_keeps_scalars_and_blanks_missing_values():
    text = csv_text([{"a": 1, "ops": [[1]]}, {"a": 2, "b": None}])
    assert text.splitlines() == ["a,b", "1,", "2,"]


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
    from tinygrad_lab.scaling import plot

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    row = {"family": "mlp", "axis": "base", "params": 10, "ours_step_s": 1.0, "unit": "x",
           "ours_items_per_s": 1.0}
    with pytest.raises(plot.MissingMatplotlib, match=r"tinygrad_lab\[plot\]"):
        plot.plot_all([row], {}, tmp_path)


# --- the quick sweep, end to end ----------------------------------------------------------------
@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("scaling")
    proc = _cli("bench", "scaling", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_quick_sweep_rows_are_finite_and_positive(quick):
    out, _ = quick
    payload = json.loads((out / "scaling.json").read_text())
    rows = payload["rows"]
    assert len(rows) == QUICK_SIZES
    with open(out / "scaling.csv") as f:
        assert len(list(csv.DictReader(f))) == QUICK_SIZES
    columns = ["params", "flops_step", "ours_step_s", "ours_cold_s", "ours_items_per_s",
               "ours_gflops", "ours_held_total", "ours_rss_peak"]
    if HAVE_TORCH:
        columns += ["torch_step_s", "torch_held_total", "speed_ratio", "memory_ratio"]
    for row in rows:
        for c in columns:
            assert isinstance(row[c], (int, float)) and math.isfinite(row[c]) and row[c] > 0, (
                row["key"], c, row[c])
        assert row["flops_step"] >= row["flops_forward"] + row["flops_backward"]
        assert row["ours_held_parameters"] == 4 * row["params"]  # float32
        if HAVE_TORCH:
            assert row["torch_params"] == row["params"]  # the same sizes in both frameworks
        if row["memory_source"] == "tl.memory":
            assert row["ours_mem_peak"] >= row["ours_held_parameters"]
            assert row["pred_total"] > 0
    assert payload["meta"]["settings"]["threads"] == 2


def test_quick_sweep_params_grow_along_each_axis(quick):
    out, _ = quick
    rows = json.loads((out / "scaling.json").read_text())["rows"]
    for family in grids.FAMILIES:
        for axis in grids.MODEL_AXES:
            line = sorted((r for r in rows if r["family"] == family
                           and r["axis"] in ("base", axis)), key=lambda r: r["value"])
            if len(line) > 1:
                params = [r["params"] for r in line]
                assert params == sorted(set(params)), (family, axis, params)


def test_quick_sweep_fits_every_family(quick):
    out, _ = quick
    summary = json.loads((out / "scaling.json").read_text())["summary"]
    for family in grids.FAMILIES:
        ours = summary[family]["ours"]
        assert ours["rate_gflops"] > 0 and math.isfinite(ours["overhead_ms"])
        assert ours["bytes_per_param"] == pytest.approx(16, rel=0.01)  # fp32 + grad + Adam m, v
        assert ours["activation_bytes_per_sample"] > 0
        if HAVE_TORCH:
            assert summary[family]["torch"]["bytes_per_param"] == pytest.approx(16, rel=0.01)
    assert "### Fits" in (out / "scaling.md").read_text()


def test_quick_sweep_plots_are_real_images(quick):
    image = pytest.importorskip("matplotlib.image")
    out, _ = quick
    for name in ("throughput.png", "memory.png", "roofline.png"):
        pixels = image.imread(out / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300, name
        assert float(pixels[..., :3].var()) > 1e-3, name  # more than a blank canvas


def test_resume_skips_finished_rows_and_reruns_the_missing_one(quick):
    out, _ = quick
    path = out / "scaling.json"
    payload = json.loads(path.read_text())
    before = {r["key"]: r["ours_step_s"] for r in payload["rows"]}
    payload["rows"] = [r for r in payload["rows"] if r["key"] != "mlp/width=32"]
    path.write_text(json.dumps(payload))  # as if interrupted before its last size
    proc = _cli("bench", "scaling", "--quick", "--out", str(out), "--resume", "--no-plots")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming: {QUICK_SIZES - 1} of {QUICK_SIZES} sizes" in proc.stdout
    after = {r["key"]: r["ours_step_s"] for r in json.loads(path.read_text())["rows"]}
    assert set(after) == set(before)
    assert all(after[k] == before[k] for k in before if k != "mlp/width=32")


def test_estimate_uses_the_sweep(quick):
    out, _ = quick
    proc = _cli("estimate", "mlp", "--set", "hidden=256", "--batch-size", "64",
                "--dataset-size", "60000", "--results", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "FLOPs per step" in text and "time per step" in text
    assert "938 steps" in text  # ceil(60000 / 64)
    assert f"measured: {out / 'scaling.json'}" in text
    assert "nearest measured size" in text


def test_estimate_without_a_sweep_says_how_to_get_one(tmp_path):
    proc = _cli("estimate", "gpt", "--set", "num_layers=1", "--batch-size", "4",
                "--dataset-size", "100", "--results", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tinygrad-lab bench scaling --families gpt" in proc.stdout


def test_bad_family_and_bad_setting_fail_cleanly(tmp_path):
    proc = _cli("bench", "scaling", "--families", "rnn", "--out", str(tmp_path))
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    proc = _cli("estimate", "mlp", "--set", "width=3", "--batch-size", "1", "--dataset-size",
                "1")
    assert proc.returncode == 1 and "KEY=VALUE" in proc.stderr


def test_ctrl_c_keeps_the_finished_rows(tmp_path):
    import signal
    import time

    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinygrad_lab", "--threads", "2", "bench", "scaling", "--quick",
         "--families", "mlp", "--no-torch", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / "scaling.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the file appears when the first size is done
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    rows = json.loads((out / "scaling.json").read_text())["rows"]
    if proc.returncode == 0:  # the sweep won the race and finished: nothing to resume
        assert len(rows) == 3
        return
    assert proc.returncode == 130, stderr[-2000:]
    assert "run again with --resume" in stdout
    assert 1 <= len(rows) < 3


def test_sweep_on_the_standin_device(tmp_path):
    """The non-CPU path (model and batch moved, no kernels, memory on that device), as on a GPU;
    PyTorch has no stand-in device, so ours only."""
    proc = _cli("bench", "scaling", "--quick", "--families", "mlp", "--device", "standin",
                "--out", str(tmp_path), "--no-plots")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "scaling.json").read_text())["rows"]
    assert [r["device"] for r in rows] == ["standin"] * 3
    assert all(r["ours_step_s"] > 0 and r.get("torch_step_s") is None for r in rows)
