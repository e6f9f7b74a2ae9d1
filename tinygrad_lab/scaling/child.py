"""One sweep size in one process, so its peak figures belong to it alone:

    python -m tinygrad_lab.scaling.child --framework ours|torch --family gpt \
        --config '{"d_model": 128, ...}' --batch 16 --context 64 --device cpu --threads 2

prints one JSON line: the cold first step (kernel compilation and first allocations) apart from
the median of the warm steps, memory by category, saved-for-backward bytes, peak RSS, and for
ours FLOPs per step, the predicted memory and the ops (for the roofline). The parent sets the
thread variables before this process starts (`sweep.run_child`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

CATEGORIES = ("parameters", "gradients", "optimizer_state", "activations", "temporaries")


def time_steps(step: Callable[[], Any], warmup: int, min_steps: int, min_time: float,
               max_steps: int) -> tuple[float, list[float]]:
    """(cold first step, warm step times): the first call timed alone, then `warmup` untimed
    calls, then at least `min_steps` and `min_time` seconds of timed calls (at most
    `max_steps`)."""
    start = time.perf_counter()
    step()
    cold = time.perf_counter() - start
    for _ in range(warmup):
        step()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < max_steps and (len(times) < min_steps
                                      or time.perf_counter() - began < min_time):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return cold, times


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def _root(array: Any) -> Any:
    while getattr(array, "base", None) is not None and hasattr(array.base, "nbytes"):
        array = array.base
    return array


def saved_bytes(loss: Any, exclude: set[int]) -> int:
    """Bytes the graph behind `loss` keeps for backward, each buffer once (views count as the
    buffer they view), leaving out the buffers in `exclude` (the parameters)."""
    from tinygrad_lab.tensor import _topological_order

    seen, nodes, total = set(exclude), set(), 0
    for t in _topological_order(loss):
        ctx = t._ctx
        if ctx is None or id(ctx) in nodes:
            continue
        nodes.add(id(ctx))
        for value in ctx.saved or ():
            if not hasattr(value, "nbytes"):
                continue
            root = _root(value)
            if id(root) not in seen:
                seen.add(id(root))
                total += int(root.nbytes)
    return total


def _flops(records: list[dict[str, Any]]) -> dict[str, int]:
    try:
        from tinygrad_lab import flops as flops_module

        counted = flops_module.step_flops(records)
    except ImportError:  # an engine without tinygrad_lab.flops: the records' own counts
        counted = {}
        for r in records:
            counted[r["phase"]] = counted.get(r["phase"], 0) + int(r["flops"])
        counted["total"] = sum(counted.values())
    return {k: int(counted.get(k, 0)) for k in ("forward", "backward", "optimizer", "total")}


def _op_bytes(r: dict[str, Any]) -> int:
    """Bytes an op moves: its record's own count when it has one, else inputs + outputs at the
    output's element size (float32 unless the record says otherwise)."""
    if "bytes" in r:
        return int(r["bytes"])
    out_elems = 1
    for s in r["out_shape"]:
        out_elems *= s
    item = r["out_bytes"] // out_elems if out_elems and r["out_bytes"] else 4
    ins = 0
    for shape in r["in_shapes"]:
        n = 1
        for s in shape:
            n *= s
        ins += n
    return int(r["out_bytes"] + ins * item)


def op_table(records: list[dict[str, Any]]) -> list[list[Any]]:
    """[op, phase, calls, flops, bytes, ms] per (op, phase), ops with FLOPs and time only."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in records:
        g = groups.setdefault((r["op"], r["phase"]), [0, 0, 0, 0.0])
        g[0] += 1
        g[1] += int(r["flops"])
        g[2] += _op_bytes(r)
        g[3] += float(r["ms"])
    return [[op, phase, int(c), int(f), int(b), round(ms, 4)]
            for (op, phase), (c, f, b, ms) in groups.items() if f > 0 and ms > 0]


def _memory_module() -> Any:
    try:
        from tinygrad_lab import memory

        return memory
    except ImportError:
        return None


def measure_ours(args: argparse.Namespace) -> dict[str, Any]:
    import tinygrad_lab as tl
    from tinygrad_lab import helpers
    from tinygrad_lab.scaling.workloads import build

    config = json.loads(args.config)
    work = build(args.family, config, args.batch, args.context, args.device)
    params = work.model.parameters()
    cold, times = time_steps(work.step, args.warmup, args.min_steps, args.min_time,
                             args.max_steps)
    out: dict[str, Any] = {"framework": "ours", "params": sum(p.size for p in params),
                           "cold_s": cold, "step_s": statistics.median(times),
                           "steps": len(times), "threads": helpers.num_threads(),
                           "kernels": helpers.kernels_enabled()}
    memory = _memory_module()
    param_roots = {id(_root(p.data)) for p in params}
    box: dict[str, int] = {}

    def counting_loss(model: Any, batch: Any) -> Any:
        loss = work.loss_fn(model, batch)
        box["saved"] = saved_bytes(loss, param_roots)
        return loss

    if memory is not None:
        memory.reset_peak(args.device)
    work.step(counting_loss)
    if memory is not None:
        stats = memory.stats(args.device)
        for cat in CATEGORIES:  # each category's own peak, and its share at the total's peak
            out[f"mem_{cat}"] = int(stats[cat]["peak"])
            out[f"mem_at_peak_{cat}"] = int(stats[cat].get("at_peak", stats[cat]["peak"]))
        out["mem_peak"] = int(stats["total"]["peak"])
        if hasattr(memory, "disable"):
            memory.disable()  # the accounting costs a little per op: off for what follows
    state = work.optimizer.state.values()
    out["held_parameters"] = sum(p.data.nbytes for p in params)
    out["held_gradients"] = sum(p.grad.data.nbytes for p in params if p.grad is not None)
    out["held_optimizer_state"] = sum(int(getattr(v, "nbytes", 0)) for s in state
                                      for v in s.values())
    out["held_activations"] = box["saved"]
    with tl.profile() as records:
        work.step()
    flops = _flops(records)
    out.update(flops_forward=flops["forward"], flops_backward=flops["backward"],
               flops_optimizer=flops["optimizer"], flops_step=flops["total"],
               ops=op_table(records))
    if memory is not None and hasattr(memory, "estimate"):
        est = memory.estimate(work.model, work.input_shape, work.optimizer, args.batch,
                              work.input_dtype)
        at_peak = getattr(est, "at_peak", est.bytes)
        for cat in CATEGORIES:
            out[f"pred_{cat}"] = int(est.bytes.get(cat, 0))
            out[f"pred_at_peak_{cat}"] = int(at_peak.get(cat, 0))
        out["pred_total"] = int(est.total)
    out["rss_peak"] = peak_rss_bytes()
    return out


def measure_torch(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from tinygrad_lab.scaling import torch_models
    from tinygrad_lab.scaling.workloads import synthetic_batch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = json.loads(args.config)
    model = torch_models.build_model(args.family, config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_np, y_np = synthetic_batch(args.family, config, args.batch, args.context)
    x, y = torch.from_numpy(x_np).to(device), torch.from_numpy(y_np).to(device)

    def step() -> float:
        loss = torch_models.loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.item())

    cold, times = time_steps(step, args.warmup, args.min_steps, args.min_time, args.max_steps)
    params = list(model.parameters())
    out: dict[str, Any] = {"framework": "torch", "params": sum(p.numel() for p in params),
                           "cold_s": cold, "step_s": statistics.median(times),
                           "steps": len(times), "threads": torch.get_num_threads(),
                           "version": torch.__version__}
    exclude = {p.untyped_storage().data_ptr() for p in params}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()  # views of one buffer count once, as the buffer
        if storage.data_ptr() not in exclude:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    if device.type == "cuda":
        out["mem_peak"] = int(torch.cuda.max_memory_allocated())
    out["held_parameters"] = sum(p.nbytes for p in params)
    out["held_gradients"] = sum(p.grad.nbytes for p in params if p.grad is not None)
    out["held_optimizer_state"] = sum(v.nbytes for s in opt.state.values() for v in s.values()
                                      if torch.is_tensor(v))
    out["held_activations"] = sum(storages.values())
    out["rss_peak"] = peak_rss_bytes()
    return out


def measure_ceilings(args: argparse.Namespace) -> dict[str, Any]:
    """The device's measured ceilings (tl.ceilings.get), or {} when the engine has none."""
    try:
        from tinygrad_lab import ceilings
    except ImportError:
        return {}
    found = ceilings.get(args.device)
    return dict(vars(found)) if hasattr(found, "__dict__") else dict(found._asdict())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("ours", "torch", "ceilings"), required=True)
    parser.add_argument("--family", required=True)
    parser.add_argument("--config", required=True, help="the model config as JSON")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--context", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-steps", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--min-time", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.device.split(":")[0] == "standin":  # the CI stand-in for a GPU (ours only)
        from tinygrad_lab.testing import standin

        standin.register()
    measure = {"ours": measure_ours, "torch": measure_torch,
               "ceilings": measure_ceilings}[args.framework]
    print(json.dumps(measure(args)), flush=True)


if __name__ == "__main__":
    main()
