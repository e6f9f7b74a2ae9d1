"""One GPU check, under 6 minutes on one H200: correctness on `cuda` against the CPU, then speed.

    python benchmarks/gpu_check.py OUTDIR                      # the full check on cuda:0
    python benchmarks/gpu_check.py OUTDIR --device standin     # dry run on the stand-in device

Writes OUTDIR/results.json and OUTDIR/results.md (one markdown table per section):
  a. correctness: every op in a compact list (forward and input gradients, float64), layers,
     optimizers, every registered kernel of the device against its reference, and one training
     step of each model of tinygrad_lab.models, each on the device against the CPU: pass/fail;
  b. hardware: device copy bandwidth, float32 / TF32 / bf16 GEMM rates;
  c. training steps (synchronised, warm, median) of the founding MLP at batch 4096, the CNN at
     batch 256 and a GPT (d_model 768, 12 layers, context 1024, batch 8), against PyTorch eager
     on the same device when torch can use it;
  d. the elementwise and row kernels' achieved bandwidth as % of the measured copy bandwidth;
  e. `tinygrad-lab bench scaling --device cuda --quick` (a subprocess).

Every check is guarded: an exception becomes a failed row with its message, never a crash; a
global time budget (`--budget`, seconds) turns what does not fit into skipped rows. The dry run
(`--device standin`, tinygrad_lab.testing.standin: NumPy arrays on the non-CPU code path) shrinks
every size so the whole script runs in CI in seconds. Needs only tinygrad_lab (and CuPy for
cuda); PyTorch is optional.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:  # a checkout on a fresh GPU machine may not be installed, or its install may not import
    import tinygrad_lab  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECTIONS = {
    "correctness": "a. correctness against the CPU",
    "hardware": "b. copy bandwidth and GEMM rates",
    "training": "c. training steps (median, synchronised) against PyTorch eager",
    "bandwidth": "d. kernels' achieved bandwidth (% of measured copy bandwidth)",
    "scaling": "e. tinygrad-lab bench scaling --quick",
}
STATUSES = ("pass", "fail", "skip", "info")


# --- results: rows, JSON and markdown ------------------------------------------------------------
@dataclass
class Row:
    """One line of the report: a check (pass/fail/skip) or a measurement (info)."""

    section: str
    name: str
    status: str
    value: str = ""  # the measurement, or the error
    detail: str = ""  # sizes, tolerances, the comparison

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.section not in SECTIONS:
            raise ValueError(f"section must be one of {sorted(SECTIONS)}, got {self.section!r}")


@dataclass
class Report:
    """Every row so far, the run's metadata, and the time budget."""

    device: str
    budget: float
    started: float = field(default_factory=time.perf_counter)
    rows: list[Row] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, name: str, status: str, value: Any = "", detail: str = "") -> Row:
        row = Row(section, name, status, _fmt(value), detail)
        self.rows.append(row)
        print(f"[{row.status:4}] {section}: {name} {row.value} {row.detail}".rstrip(), flush=True)
        return row

    def left(self) -> float:
        """Seconds of the budget still left."""
        return self.budget - (time.perf_counter() - self.started)

    @contextmanager
    def check(self, section: str, name: str, detail: str = "",
              need: float = 0.0) -> Iterator[dict[str, Any]]:
        """Run the body as one guarded check: it sets out["status"]/["value"] (default pass);
        an exception is a failed row; less than `need` seconds of budget left is a skipped row
        (the body does not run: it sees out["skip"] and must return at once)."""
        out: dict[str, Any] = {"status": "pass", "value": "", "detail": detail, "skip": False}
        if self.left() < need:
            out["skip"] = True
            yield out
            self.add(section, name, "skip", "time budget spent", detail)
            return
        try:
            yield out
        except Exception as e:  # a failed check is a row, never a crash
            message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            if os.environ.get("GPU_CHECK_TRACEBACKS"):
                traceback.print_exc()
            self.add(section, name, "fail", message, out["detail"])
            return
        self.add(section, name, out["status"], out["value"], out["detail"])

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.rows) for s in STATUSES}

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "elapsed_s": round(time.perf_counter() - self.started, 2),
                "budget_s": self.budget, "counts": self.counts(), "meta": self.meta,
                "rows": [asdict(r) for r in self.rows]}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _status(status: str) -> str:
    return "**FAIL**" if status == "fail" else status


def markdown(report: dict[str, Any]) -> str:
    """results.md from results.json's dict: a summary line, then one table per section."""
    counts = report["counts"]
    lines = [f"# GPU check on `{report['device']}`", "",
             f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped, "
             f"{counts['info']} measurements in {report['elapsed_s']} s "
             f"(budget {report['budget_s']} s).", ""]
    for key, value in sorted(report.get("meta", {}).items()):
        lines.append(f"- {key}: {_cell(value)}")
    for section, title in SECTIONS.items():
        rows = [r for r in report["rows"] if r["section"] == section]
        if not rows:
            continue
        lines += ["", f"## {title}", "", "| check | status | value | detail |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {_cell(r['name'])} | {_status(r['status'])} | {_cell(r['value'])} "
                  f"| {_cell(r['detail'])} |" for r in rows]
    return "\n".join(lines) + "\n"


def write(report: Report, out: Path) -> tuple[Path, Path]:
    """results.json and results.md under `out` (made if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_json()
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path.write_text(markdown(data))
    return json_path, md_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for results.json and results.md")
    parser.add_argument("--device", default="cuda",
                        help="cuda, cuda:N, or standin (a dry run with tiny sizes; default cuda)")
    parser.add_argument("--budget", type=float, default=330.0,
                        help="seconds for the whole check (default 330)")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
                        help="which sections to run (default all)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparisons")
    args = parser.parse_args(argv)
    if not args.budget > 0:
        parser.error(f"--budget must be > 0, got {args.budget}")
    return args


# --- the device under test ------------------------------------------------------------------------
class Device:
    """The device under test: its name, backend, array module and how to time work on it."""

    def __init__(self, name: str) -> None:
        from tinygrad_lab.backends import get_backend

        if name.split(":")[0] == "standin":
            from tinygrad_lab.testing import standin

            standin.register()
        self.name = name
        self.backend = get_backend(name)
        self.xp = self.backend.xp
        self.dry = not name.startswith("cuda")  # tiny sizes, host timers

    def sync(self) -> None:
        self.backend.synchronize()

    def median(self, fn: Callable[[], Any], warmup: int = 1, repeats: int = 5,
               deadline: float | None = None) -> float:
        """Median seconds of fn() (synchronised) after `warmup` calls; fewer repeats when
        `deadline` (a perf_counter time) comes first."""
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
            if deadline is not None and time.perf_counter() > deadline:
                break
        return statistics.median(times)


def _torch(device: Device, disabled: bool) -> tuple[Any, str] | None:
    """(torch, torch device) for the comparisons: the same card on cuda, the CPU in a dry run;
    None when torch is missing, disabled, or cannot use the GPU."""
    if disabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    if device.dry:
        return torch, "cpu"
    if not torch.cuda.is_available():
        return None
    return torch, f"cuda:{device.backend.index}"


def _skipped_without_torch(out: dict[str, Any], torch_pair: tuple[Any, str] | None) -> bool:
    """Mark a check that compares with torch as skipped when torch is not usable here."""
    if torch_pair is None:
        out["status"], out["value"] = "skip", "needs torch on this device"
        return True
    return False


# --- a. correctness ---------------------------------------------------------------------------
def _max_rel_err(ours: Any, theirs: Any, scale: float | None = None) -> float:
    """max |ours - theirs| / max(max |theirs| (or `scale`), 1e-12) (NaNs in the same places
    count as equal)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} != {b.shape}")
    if a.size == 0:
        return 0.0
    same_nan = np.isnan(a) & np.isnan(b)
    if (np.isnan(a) != np.isnan(b)).any():
        return math.inf
    diff = np.where(same_nan, 0.0, np.abs(a - b))
    if scale is None:
        scale = float(np.where(same_nan, 0.0, np.abs(b)).max())
    return float(diff.max() / max(scale, 1e-12))


def _compare(out: dict[str, Any], pairs: list[tuple[str, Any, Any]], tol: float,
             common_scale: bool = False) -> None:
    """Set out's value to the worst relative error over `pairs` (name, ours, theirs) and its
    status to fail when it passes `tol`. With `common_scale` every error is relative to the
    largest value of all pairs (gradients of a model: some, such as a key bias's, are rounding
    noise around an exact 0, and only make sense on the scale of the others)."""
    scale = max((float(np.abs(np.asarray(t, dtype=np.float64)).max(initial=0.0))
                 for _, _, t in pairs), default=0.0) if common_scale else None
    worst, where = 0.0, ""
    for name, ours, theirs in pairs:
        err = _max_rel_err(ours, theirs, scale)
        if not err <= worst:
            worst, where = err, name
    out["value"] = f"err {worst:.2e}" + (f" ({where})" if where and worst > tol else "")
    out["detail"] = (out["detail"] + f" tol {tol:.0e}").strip()
    if not worst <= tol:
        out["status"] = "fail"


def _op_cases(rng: np.random.Generator) -> list[tuple[str, Callable[..., Any], list[Any]]]:
    """(name, fn(*tensors) -> Tensor, float64 inputs): a compact list covering every op family;
    each is run forward and backward (the sum of its output) on both devices."""
    from tinygrad_lab.nn import functional as F

    def r(*shape: int) -> Any:
        return rng.standard_normal(shape)

    def pos(*shape: int) -> Any:
        return np.abs(rng.standard_normal(shape)) + 0.5

    ids = rng.integers(0, 7, (3, 5))
    labels = rng.integers(0, 6, 8)
    mask = rng.random((5, 5)) > 0.3
    cases: list[tuple[str, Callable[..., Any], list[Any]]] = [
        ("add broadcast", lambda a, b: a + b, [r(4, 5), r(5)]),
        ("sub, mul, div", lambda a, b: (a - b) * a / b, [r(4, 5), pos(4, 5)]),
        ("pow, sqrt, exp, log", lambda a: (a ** 2.5).sqrt() + a.exp() + a.log(), [pos(6, 3)]),
        ("maximum, minimum, abs", lambda a, b: a.maximum(b) + a.minimum(b).abs(),
         [r(4, 5), r(4, 5)]),
        ("matmul batched", lambda a, b: a @ b, [r(2, 3, 4), r(2, 4, 5)]),
        ("sum, mean, max axes", lambda a: a.sum(axis=1) + a.mean(axis=1) + a.max(axis=1),
         [r(3, 4, 5)]),
        ("var, std, logsumexp", lambda a: a.var(axis=-1) + a.std(axis=0).sum() +
         a.logsumexp(axis=-1), [r(4, 6)]),
        ("reshape, permute, transpose", lambda a: a.reshape(6, 4).transpose(0, 1).permute(1, 0)
         * 2, [r(2, 3, 4)]),
        ("getitem, pad, flip", lambda a: F.pad(a[1:, ::2], (1, 2)).flip(0), [r(4, 6)]),
        ("cumsum, sort values", lambda a: a.cumsum(axis=1) + a.sort(1)[0], [r(3, 5)]),
        ("gather, index_select", lambda a: a.index_select(0, np.array([2, 0, 2])),
         [r(4, 3)]),
        ("masked_fill", lambda a: a.masked_fill(a > 0.5, 0.0), [r(4, 5)]),
        ("relu, tanh, sigmoid", lambda a: a.relu() + a.tanh() + a.sigmoid(), [r(70, 90)]),
        ("gelu, softplus, silu", lambda a: a.gelu() + a.softplus() + a.silu(), [r(70, 90)]),
        ("softmax, log_softmax", lambda a: a.softmax(-1) * 3 + a.log_softmax(-1), [r(6, 40)]),
        ("softmax axis 0", lambda a: a.softmax(0) * a, [r(6, 40)]),  # sum(softmax)'s grad is 0
        ("linear + gelu", lambda x, w, b: F.linear(x, w, b, activation="gelu"),
         [r(8, 12), r(12, 6), r(6)]),
        ("linear + relu", lambda x, w, b: F.linear(x, w, b, activation="relu"),
         [r(8, 12), r(12, 6), r(6)]),
        ("layer_norm", lambda x, w, b: F.layer_norm(x, w, b), [r(4, 5, 33), r(33), r(33)]),
        ("rms_norm", lambda x, w: F.rms_norm(x, w), [r(4, 5, 33), r(33)]),
        ("conv2d s1 p1", lambda x, w, b: F.conv2d(x, w, b, padding=1),
         [r(2, 3, 9, 9), r(4, 3, 3, 3), r(4)]),
        ("conv2d s2 d2 relu", lambda x, w: F.conv2d(x, w, None, stride=2, dilation=2,
                                                    activation="relu"),
         [r(2, 3, 11, 11), r(4, 3, 3, 3)]),
        ("max_pool2d, avg_pool2d", lambda x: F.max_pool2d(x, 2) + F.avg_pool2d(x, 2),
         [r(2, 3, 8, 8)]),
        ("embedding", lambda w: F.embedding(ids, w), [r(7, 4)]),
        ("cross_entropy", lambda x: F.cross_entropy(x, labels), [r(8, 6)]),
        ("mse_loss", lambda x, y: F.mse_loss(x, y), [r(8, 6), r(8, 6)]),
        ("attention causal", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=True),
         [r(2, 2, 5, 4), r(2, 2, 5, 4), r(2, 2, 5, 4)]),
        ("attention masked", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=mask),
         [r(2, 2, 5, 4), r(2, 2, 5, 4), r(2, 2, 5, 4)]),
    ]
    return cases


@contextmanager
def _path_for(device: str) -> Iterator[None]:
    """The CPU side of every comparison runs the NumPy reference path: the ground truth the
    kernels are tested against, and no Numba compile on a fresh GPU machine."""
    from tinygrad_lab.helpers import reference

    if device == "cpu":
        with reference():
            yield
    else:
        yield


def _run_op(fn: Callable[..., Any], inputs: list[Any], device: str) -> tuple[Any, list[Any]]:
    """fn on `device` with float64 leaves: (output, input gradients) as NumPy arrays."""
    from tinygrad_lab.tensor import Tensor

    with _path_for(device):
        leaves = [Tensor(a.copy(), requires_grad=True, device=device) for a in inputs]
        out = fn(*leaves)
        out.sum().backward()
    return out.numpy(), [leaf.grad.numpy() if leaf.grad is not None else None
                         for leaf in leaves]


def check_ops(report: Report, device: Device) -> None:
    rng = np.random.default_rng(0)
    for name, fn, inputs in _op_cases(rng):
        with report.check("correctness", f"op {name}", "float64, forward + grads",
                          need=1.0) as out:
            if out["skip"]:
                continue
            ours, ours_grads = _run_op(fn, inputs, device.name)
            theirs, their_grads = _run_op(fn, inputs, "cpu")
            pairs = [("forward", ours, theirs)] + [
                (f"grad {i}", a, b) for i, (a, b) in enumerate(zip(ours_grads, their_grads))
                if b is not None]
            _compare(out, pairs, 1e-9)


def _model_pairs(model: Any, device_model: Any) -> list[tuple[str, Any, Any]]:
    return [(name, q.numpy(), p.numpy()) for (name, p), (_, q) in
            zip(model.named_parameters(), device_model.named_parameters())]


def check_layers_and_optimizers(report: Report, device: Device) -> None:
    """Layers forward + backward (weights and input gradients), then each optimizer's updates,
    on the device against the same module on the CPU."""
    import copy

    from tinygrad_lab import nn, optim
    from tinygrad_lab.random import manual_seed
    from tinygrad_lab.tensor import Tensor

    rng = np.random.default_rng(1)
    manual_seed(0)
    layers = [
        ("Linear", lambda: nn.Linear(12, 7), (5, 12)),
        ("Conv2d", lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 7)),
        ("LayerNorm", lambda: nn.LayerNorm(16), (3, 4, 16)),
        ("RMSNorm", lambda: nn.RMSNorm(16), (3, 4, 16)),
        ("BatchNorm2d", lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
        ("MultiHeadAttention", lambda: nn.MultiHeadAttention(16, 4, causal=True), (2, 6, 16)),
        ("TransformerBlock", lambda: nn.TransformerBlock(16, 2, 32, causal=True), (2, 6, 16)),
        ("LSTM", lambda: nn.LSTM(6, 8), (5, 2, 6)),
        ("GRU", lambda: nn.GRU(6, 8), (5, 2, 6)),
    ]
    for name, make, shape in layers:
        with report.check("correctness", f"layer {name}", "float32, forward + grads",
                          need=1.0) as out:
            if out["skip"]:
                continue
            cpu_layer = make()
            dev_layer = copy.deepcopy(cpu_layer).to(device.name)
            x = rng.standard_normal(shape).astype(np.float32)
            weights = None
            results = []
            for layer, dev in ((dev_layer, device.name), (cpu_layer, "cpu")):
                with _path_for(dev):
                    xt = Tensor(x, requires_grad=True, device=dev)
                    y = layer(xt)
                    y = y[0] if isinstance(y, tuple) else y  # recurrent: (output, state)
                    if weights is None:  # a random weighting: sum(y * y) of a norm is constant
                        weights = rng.standard_normal(y.shape).astype(np.float32)
                    (y * Tensor(weights, device=dev)).sum().backward()
                results.append((y.numpy(), xt.grad.numpy(),
                                [p.grad.numpy() for p in layer.parameters()]))
            (y1, gx1, gp1), (y2, gx2, gp2) = results
            _compare(out, [("forward", y1, y2), ("input grad", gx1, gx2)]
                     + [(f"param grad {i}", a, b) for i, (a, b) in enumerate(zip(gp1, gp2))],
                     2e-4, common_scale=True)
    optimizers = [
        ("SGD momentum nesterov", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9,
                                                       nesterov=True, weight_decay=0.01)),
        ("Adam", lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.01)),
        ("AdamW two groups", lambda ps: optim.AdamW([{"params": ps[:1]},
                                                     {"params": ps[1:], "weight_decay": 0.0}],
                                                    lr=1e-2)),
        ("RMSprop momentum", lambda ps: optim.RMSprop(ps, lr=1e-2, momentum=0.9)),
        ("Adagrad", lambda ps: optim.Adagrad(ps, lr=1e-2)),
    ]
    for name, make in optimizers:
        with report.check("correctness", f"optimizer {name}", "float32, 3 steps",
                          need=1.0) as out:
            if out["skip"]:
                continue
            manual_seed(0)
            cpu_model = nn.Sequential(nn.Linear(10, 32, activation="tanh"), nn.Linear(32, 3))
            dev_model = copy.deepcopy(cpu_model).to(device.name)
            x = rng.standard_normal((16, 10)).astype(np.float32)
            for model, dev in ((dev_model, device.name), (cpu_model, "cpu")):
                with _path_for(dev):
                    opt = make(list(model.parameters()))
                    for _ in range(3):
                        opt.zero_grad()
                        y = model(Tensor(x, device=dev))
                        (y * y).mean().backward()
                        opt.step()
            _compare(out, _model_pairs(cpu_model, dev_model), 2e-5)


def check_kernels(report: Report, device: Device) -> None:
    """Every kernel the device registers, on its warm-up arguments and float32/float64, against
    the reference of its name (the in-place ones compared on the arrays they update)."""
    import copy
    import importlib

    from tinygrad_lab.backends import DEVICES, REFERENCES

    kind = DEVICES[device.name.split(":")[0]]
    names = sorted(kind.kernels)
    if not names and device.dry:  # a dry run checks two CPU kernels: the same code path
        kind, names = DEVICES["cpu"], ["sgd_step", "softmax_cross_entropy_forward"]
    if not names:
        report.add("correctness", "kernels", "skip", f"no kernels registered for {kind.name}")
        return
    for name in names:
        with report.check("correctness", f"kernel {name}",
                          f"{kind.name}, float32 + float64, warm-up args", need=0.5) as out:
            if out["skip"]:
                continue
            module = importlib.import_module(
                f"{kind.kernel_package}.{kind.kernels[name].split(':')[0]}")
            kernel = kind.kernel(name)
            worst = []
            for dtype in (np.float32, np.float64):
                args = module.KERNELS[name](np.dtype(dtype))
                ours_args, theirs_args = copy.deepcopy(args), copy.deepcopy(args)
                ours = kernel(*ours_args)
                if ours is NotImplemented:
                    raise AssertionError(f"declined its own warm-up arguments ({dtype.__name__})")
                try:
                    theirs = REFERENCES[name](*theirs_args)
                except Exception as e:  # the reference's CuPy path fails: NumPy defines it too
                    theirs_args = _to_host(device, copy.deepcopy(args))
                    theirs = REFERENCES[name](*theirs_args)
                    out["detail"] += f"; host reference ({type(e).__name__} on the device)"
                pairs = [("out", o, t) for o, t in zip(_flat(ours), _flat(theirs))]
                if name.endswith("_step"):  # in place: the updated arrays
                    pairs += [("arg", o, t) for o, t in zip(_flat(ours_args), _flat(theirs_args))]
                tol = 1e-4 if dtype is np.float32 else 1e-10
                sub: dict[str, Any] = {"status": "pass", "detail": ""}
                _compare(sub, [(n, _host(device, o), _host(device, t)) for n, o, t in pairs], tol)
                worst.append(f"{dtype.__name__}: {sub['value']}")
                if sub["status"] == "fail":
                    out["status"] = "fail"
            out["value"] = "; ".join(worst)


def check_flash_attention(report: Report, device: Device) -> None:
    """The fused attention forward of kernels/cuda/attention.py (no op calls it yet) against
    matmul + masked_softmax_forward + matmul, then both timed at GPT-2 small's attention size."""
    name = "flash_attention_forward (not registered)"
    if device.dry:
        report.add("correctness", name, "skip", "a CUDA kernel: needs cuda")
        return
    from tinygrad_lab.kernels.cuda.attention import flash_attention_forward

    xp = device.xp
    masked_softmax = device.backend.resolve("masked_softmax_forward")

    def composed(q: Any, k: Any, v: Any, scale: float, causal: bool) -> Any:
        return masked_softmax(q @ k.swapaxes(-1, -2), scale, causal, None) @ v

    with report.check("correctness", name, "float32 + float64, causal and not",
                      need=2.0) as out:
        if not out["skip"]:
            pairs = []
            for dtype in (np.float32, np.float64):
                for shape, causal in (((2, 3, 7, 16), True), ((1, 2, 9, 64), False),
                                      ((2, 2, 33, 128), True)):
                    q, k, v = (xp.asarray(np.random.default_rng(i).standard_normal(shape),
                                          dtype=dtype) for i in range(3))
                    ours, _ = flash_attention_forward(q, k, v, 0.25, causal)
                    pairs.append((f"{shape} {dtype.__name__}", _host(device, ours),
                                  _host(device, composed(q, k, v, 0.25, causal))))
            _compare(out, pairs, 1e-4)
    with report.check("bandwidth", "flash attention vs matmul+softmax+matmul",
                      "B8 H12 T1024 D64 float32 causal, forward", need=5.0) as out:
        if not out["skip"]:
            q, k, v = (xp.asarray(np.random.default_rng(i).standard_normal((8, 12, 1024, 64)),
                                  dtype=xp.float32) for i in range(3))
            fused = device.median(lambda: flash_attention_forward(q, k, v, 0.125, True),
                                  warmup=2, repeats=5)
            unfused = device.median(lambda: composed(q, k, v, 0.125, True), warmup=2,
                                    repeats=5)
            out["status"] = "info"
            out["value"] = f"fused {fused * 1e3:.2f} ms, composed {unfused * 1e3:.2f} ms"


def _flat(value: Any) -> list[Any]:
    """The arrays in a (nested) result: tuples and lists flattened, None and scalars dropped."""
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _flat(v)]
    return [value] if hasattr(value, "shape") else []


def _to_host(device: Device, value: Any) -> Any:
    """Device arrays in a (nested) argument list as NumPy arrays."""
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(device, v) for v in value)
    return _host(device, value) if hasattr(value, "shape") else value


def _host(device: Device, a: Any) -> Any:
    return np.asarray(device.backend.to_numpy(a)) if not isinstance(a, np.ndarray) else a


def _model_cases(dry: bool) -> list[tuple[str, Callable[[], Any], Callable[[Any], tuple]]]:
    """(name, make model, make batch from rng): every model of tinygrad_lab.models, small."""
    from tinygrad_lab import models

    def tokens(rng: Any, vocab: int, b: int = 3, t: int = 8) -> tuple[Any, Any]:
        x = rng.integers(0, vocab, (b, t))
        return x, rng.integers(0, vocab, (b, t))

    return [
        ("MLP", lambda: models.MLP(models.MLPConfig(inputs=20, hidden=(32, 16), classes=5)),
         lambda rng: (rng.standard_normal((6, 20)).astype(np.float32), rng.integers(0, 5, 6))),
        ("CNN", lambda: models.CNN(models.CNNConfig(image=12, channels=(4, 8), hidden=16,
                                                    dropout=0.0)),
         lambda rng: (rng.standard_normal((4, 1, 12, 12)).astype(np.float32),
                      rng.integers(0, 10, 4))),
        ("GPT", lambda: models.GPT(models.GPTConfig(vocab_size=17, block_size=8, d_model=16,
                                                    num_heads=2, num_layers=2, d_ff=32)),
         lambda rng: tokens(rng, 17)),
        ("CharLSTM", lambda: models.CharLSTM(models.CharLSTMConfig(vocab_size=11, embed=8,
                                                                   hidden=16)),
         lambda rng: tokens(rng, 11)),
    ]


def _loss_fn(model: Any, batch: Any) -> Any:
    from tinygrad_lab.nn import functional as F

    x, y = batch
    logits = model(x)
    logits = logits[0] if isinstance(logits, tuple) else logits  # CharLSTM: (logits, state)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), np.asarray(y).reshape(-1))


def check_models(report: Report, device: Device) -> None:
    """One training step (forward, backward, SGD) of each model on the device and the CPU: the
    losses, the gradients (on the scale of the largest) and the updated parameters must agree."""
    import copy

    from tinygrad_lab import optim
    from tinygrad_lab.random import manual_seed
    from tinygrad_lab.tensor import Tensor
    from tinygrad_lab.train import train_step

    for name, make, batch_of in _model_cases(device.dry):
        with report.check("correctness", f"model {name} train step", "float32, SGD",
                          need=2.0) as out:
            if out["skip"]:
                continue
            manual_seed(0)
            cpu_model = make()
            dev_model = copy.deepcopy(cpu_model).to(device.name)
            x, y = batch_of(np.random.default_rng(2))
            losses, grads = [], []
            for model, dev in ((dev_model, device.name), (cpu_model, "cpu")):
                with _path_for(dev):
                    opt = optim.SGD(list(model.parameters()), lr=0.1)
                    xt = Tensor(x, device=dev) if x.dtype.kind == "f" else x
                    result = train_step(model, (xt, y), _loss_fn, opt)
                losses.append(float(result.loss.item()))
                grads.append([(n, p.grad.numpy()) for n, p in model.named_parameters()])
            _compare(out, [(f"grad {n}", a, b) for (n, a), (_, b) in zip(*grads)], 1e-4,
                     common_scale=True)
            value, failed = out["value"], out["status"] == "fail"
            _compare(out, [("loss", losses[0], losses[1])] + _model_pairs(cpu_model, dev_model),
                     1e-5)
            out["value"] = f"grads {value}; loss, params {out['value']}"
            out["detail"] = "float32, SGD; grads tol 1e-4 (of the largest), loss, params 1e-5"
            out["status"] = "fail" if failed or out["status"] == "fail" else "pass"


# --- b. hardware --------------------------------------------------------------------------------
def check_hardware(report: Report, device: Device, torch_pair: tuple[Any, str] | None) -> float:
    """Copy bandwidth (GB/s, read + write) and GEMM rates; returns the copy bandwidth (bytes/s,
    0 when it could not be measured)."""
    xp = device.xp
    copy_bw = 0.0
    n = (1 << 14) if device.dry else (1 << 28)  # 1 GiB of float32 on the GPU
    with report.check("hardware", "device copy bandwidth", f"{n * 4 >> 20} MiB float32",
                      need=5.0) as out:
        if not out["skip"]:
            src, dst = xp.ones(n, xp.float32), xp.empty(n, xp.float32)

            def copy_once() -> None:
                dst[...] = src

            seconds = device.median(copy_once, warmup=2, repeats=10)
            copy_bw = 2 * n * 4 / seconds
            out["status"], out["value"] = "info", f"{copy_bw / 1e9:.0f} GB/s"
            del src, dst
    size = 256 if device.dry else 8192
    flops = 2 * size**3
    with report.check("hardware", "GEMM float32", f"{size}^3, {device.name}", need=5.0) as out:
        if not out["skip"]:
            a = xp.asarray(np.random.default_rng(0).standard_normal((size, size)),
                           dtype=xp.float32)
            seconds = device.median(lambda: a @ a, warmup=2, repeats=5)
            out["status"], out["value"] = "info", f"{flops / seconds / 1e12:.1f} TFLOP/s"
    for label, dtype_name, tf32 in (("GEMM TF32", "float32", True), ("GEMM bf16", "bfloat16",
                                                                      False)):
        with report.check("hardware", label, f"{size}^3, torch", need=5.0) as out:
            if out["skip"] or _skipped_without_torch(out, torch_pair):
                continue
            torch, where = torch_pair
            saved = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                a = torch.randn(size, size, device=where, dtype=getattr(torch, dtype_name))

                def run(a: Any = a, torch: Any = torch, where: str = where) -> None:
                    a @ a
                    if where.startswith("cuda"):
                        torch.cuda.synchronize()

                seconds = device.median(run, warmup=2, repeats=5)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = saved
            out["status"], out["value"] = "info", f"{flops / seconds / 1e12:.1f} TFLOP/s"
    return copy_bw


# --- c. training steps ----------------------------------------------------------------------------
def _workloads(dry: bool) -> list[dict[str, Any]]:
    """The timed training steps: the founding MLP, the CNN, a GPT-2-small-sized GPT (tiny when
    dry)."""
    if dry:
        return [dict(name="MLP", family="mlp", batch=32, config=dict(inputs=784, hidden=(64,),
                                                                   classes=10)),
                dict(name="CNN", family="cnn", batch=4, config=dict(in_channels=1, image=28,
                                                                  channels=(4, 8), hidden=16,
                                                                  classes=10)),
                dict(name="GPT", family="gpt", batch=2, config=dict(
                    vocab_size=65, block_size=16, d_model=32, num_heads=2, num_layers=2,
                    d_ff=64))]
    return [dict(name="MLP 784-512-10", family="mlp", batch=4096,
                 config=dict(inputs=784, hidden=(512,), classes=10)),
            dict(name="CNN", family="cnn", batch=256,
                 config=dict(in_channels=1, image=28, channels=(32, 64), hidden=128, classes=10)),
            dict(name="GPT 768x12 ctx 1024", family="gpt", batch=8, config=dict(
                vocab_size=50304, block_size=1024, d_model=768, num_heads=12, num_layers=12,
                d_ff=3072))]


def _batch(work: dict[str, Any], rng: np.random.Generator) -> tuple[Any, Any]:
    c, b = work["config"], work["batch"]
    if work["family"] == "mlp":
        return rng.standard_normal((b, c["inputs"])).astype(np.float32), rng.integers(0, 10, b)
    if work["family"] == "cnn":
        return (rng.standard_normal((b, c["in_channels"], c["image"], c["image"]))
                .astype(np.float32), rng.integers(0, 10, b))
    t = c["block_size"]
    return rng.integers(0, c["vocab_size"], (b, t)), rng.integers(0, c["vocab_size"], (b, t))


def _ours_step(work: dict[str, Any], device: Device) -> Callable[[], Any]:
    from tinygrad_lab import models, optim
    from tinygrad_lab.random import manual_seed
    from tinygrad_lab.tensor import Tensor
    from tinygrad_lab.train import train_step

    manual_seed(0)
    c = work["config"]
    if work["family"] == "mlp":
        model = models.MLP(models.MLPConfig(**c))
    elif work["family"] == "cnn":
        model = models.CNN(models.CNNConfig(**c, dropout=0.0))
    else:
        model = models.GPT(models.GPTConfig(**c))
    model.to(device.name)
    opt = optim.AdamW(list(model.parameters()), lr=1e-4)
    x, y = _batch(work, np.random.default_rng(0))
    xt = Tensor(x, device=device.name) if x.dtype.kind == "f" else x

    def step() -> Any:
        return train_step(model, (xt, y), _loss_fn, opt).loss

    return step


def _torch_step(work: dict[str, Any], torch: Any, where: str) -> Callable[[], Any]:
    from tinygrad_lab.scaling import torch_models

    torch.manual_seed(0)
    model = torch_models.build_model(work["family"], work["config"]).to(where)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = (torch.as_tensor(a).to(where) for a in _batch(work, np.random.default_rng(0)))

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = torch_models.loss(model, x, y)
        loss.backward()
        opt.step()
        if where.startswith("cuda"):
            torch.cuda.synchronize()
        return loss

    return step


def check_training(report: Report, device: Device, torch_pair: tuple[Any, str] | None) -> None:
    repeats = 3 if device.dry else 5
    for work in _workloads(device.dry):
        detail = f"batch {work['batch']}, AdamW, {repeats} steps after 2 warm"
        ours_ms = None
        with report.check("training", f"{work['name']} ours", detail,
                          need=1.0 if device.dry else 45.0) as out:
            if not out["skip"]:
                step = _ours_step(work, device)
                seconds = device.median(step, warmup=2, repeats=repeats,
                                        deadline=time.perf_counter() + 60)
                ours_ms = seconds * 1e3
                out["status"], out["value"] = "info", f"{ours_ms:.1f} ms/step"
                del step
        with report.check("training", f"{work['name']} PyTorch eager", detail,
                          need=20.0 if not device.dry else 1.0) as out:
            if out["skip"] or _skipped_without_torch(out, torch_pair):
                continue
            torch, where = torch_pair
            step = _torch_step(work, torch, where)
            seconds = device.median(step, warmup=2, repeats=repeats,
                                    deadline=time.perf_counter() + 60)
            ratio = f", ours / torch {ours_ms / (seconds * 1e3):.2f}x" if ours_ms else ""
            out["status"], out["value"] = "info", f"{seconds * 1e3:.1f} ms/step{ratio}"
            del step


# --- d. kernels' bandwidth ------------------------------------------------------------------------
# name -> (arguments from (xp, n), arrays of n elements read + written)
def _bandwidth_cases(xp: Any, n: int) -> list[tuple[str, tuple[Any, ...], int]]:
    def r(*shape: int) -> Any:  # values in [-1.5, 1.5], made on the device
        size = int(np.prod(shape))
        return ((xp.arange(size, dtype=xp.float32) % 7 - 3) * 0.5).reshape(shape)

    rows, cols = n // 1024, 1024
    x, g = r(n), r(n)
    m = r(rows, cols)
    return [
        ("relu_forward", (x,), 2),
        ("relu_backward", (g, x), 3),
        ("gelu_forward", (x,), 2),
        ("gelu_backward", (g, x), 3),
        ("sigmoid_forward", (x,), 2),
        ("tanh_forward", (x,), 2),
        ("bias_act_forward", (m, r(cols), "gelu"), 2),
        ("softmax_forward", (m, -1), 2),
        ("softmax_backward", (m, m, -1), 3),
        ("layer_norm_forward", (m, r(cols), r(cols), 1e-5), 2),
        ("adamw_step", (r(n), g, r(n), xp.abs(r(n)), 1e-3, 0.9, 0.999, 1e-8, 0.01, 5), 7),
    ]


def check_bandwidth(report: Report, device: Device, copy_bw: float) -> None:
    n = (1 << 16) if device.dry else (1 << 26)  # 256 MiB per float32 array on the GPU
    if not copy_bw:
        report.add("bandwidth", "kernels", "skip", "no copy bandwidth measured")
        return
    try:
        cases = _bandwidth_cases(device.xp, n)
    except Exception as e:
        report.add("bandwidth", "kernels", "fail", f"{type(e).__name__}: {e}")
        return
    for name, args, arrays in cases:
        kind = "kernel" if device.backend.is_kernel(name) else "reference"
        with report.check("bandwidth", name, f"{n} float32, {kind}", need=3.0) as out:
            if out["skip"]:
                continue
            fn = device.backend.resolve(name)
            seconds = device.median(lambda fn=fn, args=args: fn(*args), warmup=2, repeats=10)
            achieved = arrays * n * 4 / seconds
            out["status"] = "info"
            out["value"] = f"{achieved / 1e9:.0f} GB/s = {100 * achieved / copy_bw:.0f}% of copy"


# --- e. scaling CLI ------------------------------------------------------------------------------
def check_scaling(report: Report, device: Device, out_dir: Path) -> None:
    name = "tinygrad-lab bench scaling --quick"
    if device.dry:
        report.add("scaling", name, "skip", "dry run: the sweep needs a real device")
        return
    command = [sys.executable, "-m", "tinygrad_lab", "bench", "scaling", "--help"]
    help_text = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    if "--device" not in help_text:
        report.add("scaling", name, "skip", "this CLI's bench scaling takes no --device")
        return
    with report.check("scaling", name, f"--device {device.name}", need=30.0) as out:
        if out["skip"]:
            return
        timeout = report.left() - 5
        command = [sys.executable, "-m", "tinygrad_lab", "bench", "scaling", "--device",
                   device.name, "--quick", "--no-plots", "--out", str(out_dir / "scaling")]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            out["status"], out["value"] = "skip", f"stopped after {timeout:.0f} s (time budget)"
            return
        tail = " ".join((done.stdout + done.stderr).split()[-30:])
        if done.returncode:
            raise RuntimeError(f"exit {done.returncode}: {tail}")
        out["value"] = f"{time.perf_counter() - start:.0f} s, results in {out_dir / 'scaling'}"


# --- main -----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> Report:
    report = Report(args.device, args.budget)
    report.meta.update(python=platform.python_version(), numpy=np.__version__,
                       machine=platform.machine())
    try:
        device = Device(args.device)
    except Exception as e:
        report.add("correctness", "device", "fail", f"{type(e).__name__}: {e}")
        return report
    if not device.dry:
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(device.backend.index)
            report.meta.update(gpu=props["name"].decode(), cupy=cupy.__version__)
        except Exception as e:  # metadata only
            report.meta["gpu"] = f"unknown ({type(e).__name__})"
    torch_pair = _torch(device, args.no_torch)
    if torch_pair is not None:
        report.meta["torch"] = f"{torch_pair[0].__version__} on {torch_pair[1]}"
    copy_bw = 0.0
    if "correctness" in args.sections:
        for section in (check_ops, check_kernels, check_flash_attention,
                        check_layers_and_optimizers, check_models):
            try:
                section(report, device)
            except Exception as e:  # a whole section failing is one row
                report.add("correctness", section.__name__, "fail", f"{type(e).__name__}: {e}")
    if "hardware" in args.sections or "bandwidth" in args.sections:
        copy_bw = check_hardware(report, device, torch_pair)
    if "training" in args.sections:
        check_training(report, device, torch_pair)
    if "bandwidth" in args.sections:
        check_bandwidth(report, device, copy_bw)
    if "scaling" in args.sections:
        try:
            check_scaling(report, device, args.out)
        except Exception as e:
            report.add("scaling", "tinygrad-lab bench scaling --quick", "fail",
                       f"{type(e).__name__}: {e}")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    json_path, md_path = write(report, args.out)
    counts = report.counts()
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped; "
          f"wrote {json_path} and {md_path}")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
