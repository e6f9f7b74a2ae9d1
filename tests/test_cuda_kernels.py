"""Every CUDA kernel against its reference (the op's xp body run by CuPy), on a real GPU.

Skipped, with the reason, where CuPy sees no GPU (CI); tests/test_cuda_sources.py checks there
that the sources compile and the launches match the kernels' parameters. Each case compares the
kernel's outputs and, for the in-place kernels, the arrays it updates, over several shapes
(empty, size-1, odd, wider than a block) and both float dtypes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import tinygrad_lab  # noqa: F401  (registers every reference function)
import tinygrad_lab.optim  # noqa: F401
from tinygrad_lab.backends import REFERENCES
from tinygrad_lab.kernels import CUDA_KERNELS, lookup

cupy = pytest.importorskip("cupy")


def _gpus() -> int:
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDARuntimeError: no driver or no GPU
        return 0


needs_gpu = pytest.mark.skipif(_gpus() == 0, reason="needs an NVIDIA GPU visible to CuPy")

DTYPES = (np.float32, np.float64)
ROWS = [(1, 1), (3, 5), (64, 10), (7, 257), (2, 3, 1030)]  # (..., C): a warp, a block and more
FLAT = [(0,), (1,), (1000,), (33, 65), (2, 3, 4, 5)]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _normal(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> Any:
    return cupy.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _positive(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> Any:
    return cupy.abs(_normal(shape, dtype, seed)) + 0.5


def _labels(n: int, c: int) -> Any:
    return cupy.asarray(np.random.default_rng(1).integers(-c, c, n))


def _opt_args(dtype: Any, n_state: int, shape: tuple[int, ...]) -> list[Any]:
    state = [_positive(shape, dtype, 3 + i) for i in range(n_state)]
    return [_normal(shape, dtype, 1), _normal(shape, dtype, 2), *state]


def _multi(dtype: Any, n_state: int) -> list[list[Any]]:
    tensors = [_opt_args(dtype, n_state, s) for s in [(3, 4), (70000,), (1,), (0,), (5, 6, 7)]]
    return [list(column) for column in zip(*tensors)]


# name -> builders: (dtype) -> arguments of one call
CASES: dict[str, list[Callable[[Any], tuple[Any, ...]]]] = {
    **{f"{a}_forward": [lambda dt, s=s: (_normal(s, dt) * 3,) for s in FLAT]
       for a in ("relu", "tanh", "sigmoid", "gelu")},
    **{f"{a}_backward": [lambda dt, s=s: (_normal(s, dt), _normal(s, dt, 1)) for s in FLAT]
       for a in ("relu", "tanh", "sigmoid", "gelu")},
    "softplus_forward": [lambda dt, s=s: (_normal(s, dt) * 10, 2.0, 5.0) for s in FLAT],
    "softplus_backward": [lambda dt, s=s: (_normal(s, dt), _normal(s, dt, 1) * 10, 2.0, 5.0)
                          for s in FLAT],
    "bias_act_forward": [lambda dt, s=s, a=a: (_normal(s, dt), _normal(s[-1:], dt, 1), a)
                         for s in ROWS for a in (None, "relu", "tanh", "sigmoid", "gelu")]
                        + [lambda dt: (_normal((4, 9), dt), None, "gelu")],
    **{name: [lambda dt, s=s: (_normal(s, dt) * 4, -1) for s in ROWS]
       for name in ("softmax_forward", "log_softmax_forward")},
    "softmax_backward": [lambda dt, s=s: (_normal(s, dt), _positive(s, dt, 1), -1) for s in ROWS],
    "log_softmax_backward": [lambda dt, s=s: (_normal(s, dt), -_positive(s, dt, 1), -1)
                             for s in ROWS],
    "softmax_cross_entropy_forward": [lambda dt, n=n, c=c: (_normal((n, c), dt) * 3, _labels(n, c))
                                      for n, c in [(1, 1), (5, 3), (128, 10), (9, 1500)]],
    "layer_norm_forward": [lambda dt, s=s: (_normal(s, dt) * 2 + 1, _normal(s[-1:], dt, 1),
                                            _normal(s[-1:], dt, 2), 1e-5) for s in ROWS],
    "rms_norm_forward": [lambda dt, s=s: (_normal(s, dt) * 2, _normal(s[-1:], dt, 1), 1e-6)
                         for s in ROWS],
    "layer_norm_backward": [lambda dt, s=s: (_normal(s, dt), _normal(s, dt, 1),
                                             _normal(s[-1:], dt, 2), _normal(s[:-1], dt, 3),
                                             _positive(s[:-1], dt, 4)) for s in ROWS + [(300, 7)]],
    "rms_norm_backward": [lambda dt, s=s: (_normal(s, dt), _normal(s, dt, 1),
                                           _normal(s[-1:], dt, 2), _positive(s[:-1], dt, 4))
                          for s in ROWS + [(300, 7)]],
    "masked_softmax_forward": [
        lambda dt, s=s, causal=causal, m=m: (_normal(s, dt) * 3, 0.5, causal,
                                             None if m is None else cupy.asarray(m))
        for s in [(2, 3, 5, 5), (1, 2, 3, 7), (4, 6), (2, 2, 9, 300)]
        for causal in (False, True)
        for m in (None, np.random.default_rng(5).random(s[-1:]) > 0.3)
    ] + [lambda dt: (_normal((2, 2, 4, 4), dt), 1.0, True,
                     cupy.zeros((2, 1, 1, 4), bool))],  # every key hidden: rows of 0
    "masked_softmax_backward": [lambda dt, s=s: (_normal(s, dt), _positive(s, dt, 1), 0.125)
                                for s in [(2, 3, 5, 5), (4, 6), (1, 1, 3, 1030)]],
    "embedding_backward": [lambda dt, n=n, v=v, d=d: (
        _normal((n, d), dt), cupy.asarray(np.random.default_rng(2).integers(0, v, n)), v)
        for n, v, d in [(1, 1, 1), (40, 7, 16), (1000, 50, 33)]],
    "im2col": [lambda dt, s=s, k=k, st=st, p=p, d=d: (_normal(s, dt), k, st, p, d)
               for s, k, st, p, d in [((2, 3, 8, 8), (3, 3), (1, 1), (1, 1), (1, 1)),
                                      ((1, 2, 7, 9), (2, 3), (2, 1), (0, 2), (1, 2)),
                                      ((3, 1, 5, 5), (1, 1), (2, 2), (0, 0), (1, 1))]],
    "col2im": [lambda dt, s=s, k=k, st=st, p=p, d=d, o=o: (
        _normal((s[1] * k[0] * k[1], s[0] * o[0] * o[1]), dt), s, k, st, p, d)
        for s, k, st, p, d, o in [((2, 3, 8, 8), (3, 3), (1, 1), (1, 1), (1, 1), (8, 8)),
                                  ((1, 2, 7, 9), (2, 3), (2, 1), (0, 2), (1, 2), (3, 9)),
                                  ((3, 1, 5, 5), (3, 3), (2, 2), (1, 1), (1, 1), (3, 3))]],
    "sgd_step": [lambda dt, s=s, mom=mom, nest=nest, first=first: (
        *_opt_args(dt, 1, s), 0.1, mom, 0.0 if nest else 0.1, 0.01, nest, first)
        for s in [(1,), (3, 4), (70000,)] for mom, nest in [(0.9, False), (0.9, True)]
        for first in (True, False)],
    "adam_step": [lambda dt, s=s, wd=wd: (*_opt_args(dt, 2, s), 1e-3, 0.9, 0.999, 1e-8, wd, 3)
                  for s in [(1,), (3, 4), (70000,)] for wd in (0.0, 0.1)],
    "adamw_step": [lambda dt, s=s: (*_opt_args(dt, 2, s), 1e-3, 0.9, 0.999, 1e-8, 0.1, 1)
                   for s in [(1,), (3, 4), (70000,)]],
    "rmsprop_step": [lambda dt, s=s, mom=mom: (*_opt_args(dt, 2, s)[:3], 1e-2, 0.99, 1e-8, 0.1,
                                               mom, _positive(s, dt, 9))
                     for s in [(1,), (3, 4), (70000,)] for mom in (0.0, 0.9)],
    "adagrad_step": [lambda dt, s=s: (*_opt_args(dt, 1, s), 1e-2, 1e-10, 0.1)
                     for s in [(1,), (3, 4), (70000,)]],
    "sgd_multi_step": [lambda dt, first=first: (*_multi(dt, 1), 0.1, 0.9, 0.0, 0.01, True,
                                                first) for first in (True, [False] * 5)],
    "adam_multi_step": [lambda dt: (*_multi(dt, 2), 1e-3, 0.9, 0.999, 1e-8, 0.1, [1, 2, 3, 3, 1])],
    "adamw_multi_step": [lambda dt: (*_multi(dt, 2), 1e-3, 0.9, 0.999, 1e-8, 0.1, 4)],
}


def _compare(ours: Any, theirs: Any, dtype: Any, what: str) -> None:
    if isinstance(ours, (list, tuple)):
        assert isinstance(theirs, (list, tuple)) and len(ours) == len(theirs), what
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _compare(a, b, dtype, f"{what}[{i}]")
    elif ours is None or isinstance(ours, (str, int, float, bool)):
        assert ours == theirs, what
    else:
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, what
        np.testing.assert_allclose(cupy.asnumpy(ours), cupy.asnumpy(theirs), err_msg=what,
                                   **TOL[dtype])


def test_every_cuda_kernel_has_cases() -> None:
    assert set(CASES) == set(CUDA_KERNELS)


IN_PLACE = {name for name in CASES if name.endswith("_step")}
"""Kernels that update their array arguments (compared too); bias_act_forward writes into its
`y` where the reference returns a new array, so only its output is compared."""

ON_HOST = {"embedding_backward"}
"""Compared with the reference run by NumPy: np.add.at is the definition of the scatter-add."""


def _host(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v) for v in value)
    return cupy.asnumpy(value) if isinstance(value, cupy.ndarray) else value


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_matches_cupy_reference(name: str, dtype: Any) -> None:
    kernel = lookup(name, "tinygrad_lab.kernels.cuda", CUDA_KERNELS)
    for i, build in enumerate(CASES[name]):
        args = build(dtype)
        ours_args, theirs_args = copy.deepcopy(args), copy.deepcopy(args)
        if name in ON_HOST:
            theirs_args = _host(theirs_args)
        ours = kernel(*ours_args)
        assert ours is not NotImplemented, f"{name} declined case {i}"
        theirs = cupy.asarray(REFERENCES[name](*theirs_args)) if name in ON_HOST else \
            REFERENCES[name](*theirs_args)
        _compare(ours, theirs, dtype, f"{name} case {i}")
        if name in IN_PLACE:
            _compare(list(ours_args), list(theirs_args), dtype, f"{name} case {i} (in place)")


@needs_gpu
def test_cuda_device_runs_the_kernels_through_the_backend() -> None:
    from tinygrad_lab.backends import get_backend

    backend = get_backend("cuda")
    for name in CUDA_KERNELS:
        assert backend.is_kernel(name), name
    x = cupy.asarray(np.random.default_rng(0).standard_normal((6, 9)).astype(np.float32))
    y = backend.call("softmax_forward", x[:, ::2], -1)  # strided: the backend copies first
    np.testing.assert_allclose(cupy.asnumpy(y.sum(axis=-1)), np.ones(6), rtol=1e-6)
    assert backend.call("softmax_forward", x.astype(np.float16), -1).dtype == np.float16


def _attention_reference(q: Any, k: Any, v: Any, scale: float, causal: bool) -> tuple[Any, Any]:
    """softmax(scale q k^T) v through the registered reference of masked_softmax_forward."""
    scores = q @ k.swapaxes(-1, -2)  # (..., T, S)
    y = REFERENCES["masked_softmax_forward"](scores, scale, causal, None)
    z = scores * scale
    if causal:
        t, s = scores.shape[-2:]
        hidden = cupy.arange(s)[None, :] > cupy.arange(t)[:, None] + (s - t)
        z = cupy.where(hidden, -cupy.inf, z)
    m = z.max(axis=-1, keepdims=True)
    lse = (m + cupy.log(cupy.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]
    return y @ v, lse


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (2, 3, 7, 7, 16), (1, 2, 5, 9, 64),
                                   (2, 2, 33, 33, 128), (3, 17, 17, 40)])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_forward_matches_the_composition(dtype: Any, shape: tuple[int, ...],
                                                         causal: bool) -> None:
    from tinygrad_lab.kernels.cuda.attention import flash_attention_forward

    *lead, t, s, d = shape
    q, k, v = (_normal((*lead, n, d), dtype, seed) for n, seed in ((t, 0), (s, 1), (s, 2)))
    out, lse = flash_attention_forward(q, k, v, 0.3, causal)
    ref_out, ref_lse = _attention_reference(q, k, v, 0.3, causal)
    _compare((out, lse), (ref_out, ref_lse), dtype, f"flash attention {shape}")
