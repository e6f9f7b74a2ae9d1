"""Time accounting: step totals and engine overhead, the summary table, the Chrome trace export
and the machine ceilings (measured once, cached)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import ceilings, function, nn, optim
from tinygrad_lab.ceilings import Ceilings
from tinygrad_lab.nn import functional as F

FAKE = Ceilings(gemm_gflops=100.0, copy_gbps=10.0, threads=1, device="cpu", gemm_size=256)


def _step(records_out: list | None = None) -> tl.function.ProfileRecords:
    model = nn.Sequential(nn.Linear(6, 5, activation="relu"), nn.Linear(5, 3))
    opt = optim.Adam(model.parameters())
    x = tl.Tensor(np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    with tl.profile() as records:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return records


def test_profile_records_carry_times_bytes_and_the_optimizer() -> None:
    records = _step()
    assert records.wall_seconds > 0 and 0 <= records.profiler_seconds < records.wall_seconds
    assert {r["phase"] for r in records} == {"forward", "backward", "optimizer"}
    assert [r["op"] for r in records if r["phase"] == "optimizer"] == ["Adam"] * 4
    starts = [r["start_ms"] for r in records]
    assert starts == sorted(starts) and starts[0] >= 0
    assert all(r["device"] == "cpu" for r in records)
    # the first Linear reads x (8, 6), w (6, 5), b (5) and writes y (8, 5), float32
    first = records[0]
    assert first["op"] == "Linear" and first["bytes"] == 4 * (48 + 30 + 5 + 40)
    assert not function.is_observed()  # profiling is off again outside the block


def test_bytes_of_views_and_copies() -> None:
    x = tl.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    with tl.profile() as records:
        (x.reshape(3, 2).relu() + 1.0).sum().backward()
    by = {(r["op"], r["phase"]): r["bytes"] for r in records}
    assert by[("Reshape", "forward")] == 0 and by[("Reshape", "backward")] == 0  # views
    assert by[("Relu", "forward")] == 24 + 24  # read x, wrote y
    assert by[("Add", "backward")] == 0  # the gradient passed through


def test_overhead_is_the_time_outside_the_array_maths() -> None:
    x = tl.Tensor(np.ones((4, 4)), requires_grad=True)
    with tl.profile() as records:
        y = (x * 2.0).sum()
        time.sleep(0.05)  # "engine" time: no op runs
        y.backward()
    step = tl.step_timing(records, ceilings=None)
    assert step.wall_seconds >= 0.05 > step.op_seconds
    assert step.overhead_fraction > 0.9
    assert step.overhead_seconds == pytest.approx(step.wall_seconds - step.op_seconds)
    assert step.gemm_fraction is None and step.ceilings is None
    assert step.as_dict()["overhead_seconds"] == pytest.approx(step.overhead_seconds)


def test_step_timing_against_ceilings() -> None:
    records = _step()
    step = tl.step_timing(records, ceilings=FAKE)
    assert 0 <= step.overhead_fraction < 1
    assert step.flops == tl.flops.step_flops(records)
    assert step.gflops == pytest.approx(step.flops["total"] / step.wall_seconds / 1e9)
    assert step.gemm_fraction == pytest.approx(step.gflops / 100.0)
    assert step.copy_fraction == pytest.approx(step.bytes / step.wall_seconds / 1e9 / 10.0)


def test_profile_summary_rows() -> None:
    records = _step()
    summary = tl.profile_summary(records, ceilings=FAKE)
    rows = {(r["op"], r["phase"]): r for r in summary["ops"]}
    linear = rows[("Linear", "forward")]
    assert linear["calls"] == 2
    ms = sum(r["ms"] for r in records if r["op"] == "Linear" and r["phase"] == "forward")
    assert linear["ms"] == pytest.approx(ms)
    assert linear["gflops"] == pytest.approx(linear["flops"] / (ms * 1e6))
    assert linear["gemm_fraction"] == pytest.approx(linear["gflops"] / 100.0)
    assert linear["copy_fraction"] == pytest.approx(linear["gbps"] / 10.0)
    assert [r["ms"] for r in summary["ops"]] == sorted((r["ms"] for r in summary["ops"]),
                                                      reverse=True)


def test_summarize_shows_rates_ceilings_and_overhead() -> None:
    text = tl.summarize(_step(), ceilings=FAKE)
    header = text.splitlines()[0].split()
    assert header[:5] == ["op", "phase", "calls", "ms", "%"]
    for column in ("GFLOP/s", "GEMM", "GB/s", "copy"):
        assert column in header
    assert "engine overhead:" in text and "% of step" in text
    assert "ceilings (cpu, 1 thread): GEMM 100.0 GFLOP/s" in text
    assert "Adam" in text and "optimizer" in text
    bare = tl.summarize(_step(), ceilings=None)
    assert "ceilings" not in bare


def test_summarize_measures_the_machine_by_default() -> None:
    """"auto" reads this machine's ceilings (the session's cache: tests/conftest.py)."""
    assert "ceilings (cpu" in tl.summarize(_step())


def test_chrome_trace_export(tmp_path: Path) -> None:
    records = _step()
    path = tl.export_chrome_trace(records, tmp_path / "step.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step.json"]  # no temporary left
    events = json.loads(path.read_text())["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    ops = [e for e in complete if e["cat"] in ("forward", "backward", "optimizer")]
    assert len(ops) == len(records)
    for phase in ("forward", "backward"):
        want = [r["op"] for r in records if r["phase"] == phase]
        assert [e["name"] for e in ops if e["cat"] == phase] == want
    for e in complete:
        assert e["ts"] >= 0 and e["dur"] >= 0
    first = next(e for e in ops if e["name"] == "Linear")
    assert first["args"]["in_shapes"] == [[8, 6], [6, 5], [5]] and first["args"]["flops"] > 0
    # op events in time order, one after the other, each inside its phase and the whole region
    for a, b in zip(ops, ops[1:]):
        assert a["ts"] + a["dur"] <= b["ts"] + 1e-3
    region = next(e for e in complete if e["cat"] == "step")
    phases = [e for e in complete if e["cat"] == "phase"]
    assert [p["name"] for p in phases] == ["forward", "backward", "optimizer"]
    for e in ops:
        phase = next(p for p in phases if p["name"] == e["cat"])
        assert phase["ts"] <= e["ts"] and e["ts"] + e["dur"] <= phase["ts"] + phase["dur"] + 1e-3
        assert region["ts"] <= e["ts"] and e["ts"] + e["dur"] <= region["ts"] + region["dur"]
    # parents are listed before their children (Perfetto nests complete events by order)
    assert events.index(region) < min(events.index(p) for p in phases)
    for p in phases:
        assert events.index(p) < min(events.index(e) for e in ops if e["cat"] == p["name"])


# --- ceilings ------------------------------------------------------------------------------------
def test_ceilings_cache_honours_the_environment(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYGRAD_LAB_CACHE_DIR", str(tmp_path / "c"))
    assert ceilings.cache_path() == tmp_path / "c" / "ceilings.json"
    monkeypatch.delenv("TINYGRAD_LAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ceilings.cache_path() == tmp_path / "xdg" / "tinygrad_lab" / "ceilings.json"


def test_ceilings_measured_once_then_cached(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYGRAD_LAB_CACHE_DIR", str(tmp_path))
    calls: list[int | None] = []

    def fake_measure(device: str = "cpu", threads: int | None = None) -> Ceilings:
        calls.append(threads)
        return Ceilings(50.0 * threads, 5.0, threads, device, 256, "now")

    monkeypatch.setattr(ceilings, "measure", fake_measure)
    first = ceilings.get(threads=2)
    assert first.gemm_gflops == 100.0 and calls == [2]
    assert ceilings.get(threads=2) == first and calls == [2]  # from the file
    assert ceilings.get(threads=1).gemm_gflops == 50.0 and calls == [2, 1]  # another key
    assert ceilings.get(threads=2, refresh=True) == first and calls == [2, 1, 2]
    assert len(json.loads((tmp_path / "ceilings.json").read_text())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ceilings.json"]
    (tmp_path / "ceilings.json").write_text("{not json")
    assert ceilings.get(threads=2) == first and calls == [2, 1, 2, 2]  # a bad file: measured
    with pytest.raises(ValueError, match="thread count"):
        ceilings.get(threads=0)


def test_ceilings_measure_this_machine_quickly() -> None:
    start = time.perf_counter()
    c = ceilings.measure("cpu", threads=1)
    assert time.perf_counter() - start < 3.0
    assert c.gemm_gflops > 0 and c.copy_gbps > 0 and c.threads == 1 and c.device == "cpu"
    assert c.gemm_size >= 256
