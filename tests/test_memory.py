"""The training step does not leak: live tensor bytes and traced allocations stay flat."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

import tinygrad_lab as tl
from tinygrad_lab import helpers, nn, optim
from tinygrad_lab.nn import functional as F


def _mlp_step_factory():
    tl.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48, activation="relu"), nn.Linear(48, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = rng.random((32, 64), dtype=np.float32)
    y = rng.integers(0, 10, 32)

    def step() -> float:
        loss = F.cross_entropy(model(tl.Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def test_live_tensor_bytes_flat_over_1000_steps(cpu_path) -> None:
    step = _mlp_step_factory()
    for _ in range(100):
        step()
    gc.collect()
    after_warmup = helpers.live_tensor_bytes()
    tracemalloc.start()
    for _ in range(900):
        step()
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after_1000 = helpers.live_tensor_bytes()
    assert after_1000 == after_warmup, (after_warmup, after_1000)
    # Anything still allocated after 900 more steps is growth; allow interpreter noise only.
    assert traced < 64 * 1024, f"{traced} bytes allocated during 900 steps are still alive"


def test_backward_frees_saved_arrays() -> None:
    x = tl.Tensor(np.ones((256, 256), np.float32), requires_grad=True)
    y = (x * 2).tanh().sum()
    node = y._ctx
    assert node is not None
    y.backward()
    assert node.saved is None and node.parents == ()
