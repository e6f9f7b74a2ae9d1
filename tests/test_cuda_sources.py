"""The CUDA kernels without a GPU: every CUDA C source compiles to PTX with NVRTC (sm_80 and
sm_90), and every CUDA kernel has the name and signature of a reference function (and of the CPU
kernel of that name, where there is one).

NVRTC is a library (nvidia-cuda-nvrtc); it needs no driver and no GPU, so CI compiles what a GPU
run would compile, and a syntax error fails here with NVRTC's log.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
import types

import numpy as np
import pytest

import tinygrad_lab  # noqa: F401  (registers every reference function)
import tinygrad_lab.optim  # noqa: F401
from tinygrad_lab.backends import DEVICES, REFERENCES
from tinygrad_lab.kernels import CPU_KERNELS, CUDA_KERNELS, lookup
from tinygrad_lab.kernels.cuda import _common

nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc")  # installed here and in CI

ARCHS = ("compute_80", "compute_90")


def _modules() -> list[str]:
    import tinygrad_lab.kernels.cuda as package

    return [i.name for i in pkgutil.iter_modules(package.__path__) if not i.name.startswith("_")]


def _sources() -> list[_common.CudaSource]:
    found = []
    for name in _modules():
        module = importlib.import_module(f"tinygrad_lab.kernels.cuda.{name}")
        found += [v for v in vars(module).values() if isinstance(v, _common.CudaSource)]
    return found


def compile_ptx(source: _common.CudaSource, arch: str) -> str:
    """PTX of every template instance of `source` for `arch`; AssertionError with NVRTC's log on
    a compile error."""
    program = nvrtc.createProgram(source.code, f"{source.name}.cu", [], [])
    try:
        for expression in source.name_expressions():
            nvrtc.addNameExpression(program, expression)
        try:
            nvrtc.compileProgram(program, [f"--gpu-architecture={arch}", *_common.OPTIONS])
        except nvrtc.NVRTCError:
            raise AssertionError(f"{source.name}.cu does not compile for {arch}:\n"
                                 + nvrtc.getProgramLog(program)) from None
        for expression in source.name_expressions():
            assert nvrtc.getLoweredName(program, expression)
        return nvrtc.getPTX(program).decode() if isinstance(nvrtc.getPTX(program), bytes) \
            else nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)


def test_every_family_module_has_one_source() -> None:
    sources = _sources()
    assert {s.name for s in sources} >= {"activations", "softmax", "layernorm", "attention",
                                         "embedding", "optim", "conv"}
    assert len({s.name for s in sources}) == len(sources)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", sorted(s.name for s in _sources()))
def test_source_compiles_to_ptx(name: str, arch: str) -> None:
    (source,) = [s for s in _sources() if s.name == name]
    ptx = compile_ptx(source, arch)
    for kernel in source.kernels:  # each template instance is an entry point of the PTX
        assert ptx.count(f".entry _Z{len(kernel)}{kernel}I") == 2, kernel


def test_a_syntax_error_fails_with_nvrtc_log() -> None:
    broken = _common.CudaSource("broken", "template <typename T> __global__ void k(T* x) "
                                "{ x[0] = ; }", ("k",))
    with pytest.raises(AssertionError, match="expected an expression"):
        compile_ptx(broken, "compute_90")


def test_cuda_kernels_are_collected_and_importable_without_a_gpu() -> None:
    assert DEVICES["cuda"].kernels is CUDA_KERNELS
    assert len(CUDA_KERNELS) >= 30
    for name in CUDA_KERNELS:
        assert lookup(name, "tinygrad_lab.kernels.cuda", CUDA_KERNELS) is not None, name


def _parameters(fn: object) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", sorted(CUDA_KERNELS))
def test_cuda_kernel_matches_its_reference_and_cpu_kernel(name: str) -> None:
    kernel = lookup(name, "tinygrad_lab.kernels.cuda", CUDA_KERNELS)
    assert name in REFERENCES, f"CUDA kernel {name!r} has no reference function"
    assert _parameters(kernel) == _parameters(REFERENCES[name]), name
    if name in CPU_KERNELS:
        assert _parameters(kernel) == _parameters(lookup(name)), name
    assert callable(kernel) and kernel.__doc__, f"{name}: a docstring says what it computes"


def test_warm_up_arguments_are_declared_for_every_kernel() -> None:
    for module_name in _modules():
        module = importlib.import_module(f"tinygrad_lab.kernels.cuda.{module_name}")
        for name, make_args in module.KERNELS.items():
            assert callable(make_args) and callable(getattr(module, name)), name


# --- launch arguments against the kernels' C parameters, with CuPy played by NumPy --------------
# Without a GPU the launchers can still run up to the launch: a stand-in `cupy` module (NumPy
# arrays whose type claims to be CuPy's) and a recording `launch` check that every argument has
# the width and type of its C parameter (a Python int passed for an `int` would shift every later
# argument on a real GPU) and that the grid and block sizes are positive ints.
class _FakeArray(np.ndarray):
    @property
    def data(self):  # type: ignore[override]  # CuPy's MemoryPointer: .ptr
        return types.SimpleNamespace(ptr=self.ctypes.data)


_FakeArray.__module__ = "cupy._core.core"


def _fake_cupy() -> types.ModuleType:
    def wrap(fn):
        return lambda *a, **k: np.asarray(fn(*a, **k)).view(_FakeArray)

    cp = types.ModuleType("cupy")
    for name in ("empty", "zeros", "ones", "asarray", "array", "ascontiguousarray", "arange",
                 "empty_like", "zeros_like"):
        setattr(cp, name, wrap(getattr(np, name)))
    for name in ("int64", "int32", "uint8", "uint64", "bool_", "float32", "float64", "ndarray"):
        setattr(cp, name, getattr(np, name))

    class _Rng:
        def __init__(self, seed: int) -> None:
            self.rng = np.random.default_rng(seed)

        def standard_normal(self, shape):
            return self.rng.standard_normal(shape).view(_FakeArray)

    cp.random = types.SimpleNamespace(default_rng=_Rng)
    return cp


_PARAMS = re.compile(r"__global__ void (\w+)\((.*?)\)\s*\{", re.S)
_GEOMETRY = ", ".join(f"int {n}" for n in "n c h w kh kw sh sw ph pw dh dw oh ow".split())


def _c_parameters(source: _common.CudaSource) -> dict[str, list[str]]:
    params = {}
    for name, text in _PARAMS.findall(source.code):
        text = text.replace("GEOMETRY_ARGS", _GEOMETRY)
        params[name] = [" ".join(p.split()) for p in text.split(",")]
    return params


def _check_argument(where: str, param: str, arg: object, dtype: np.dtype) -> None:
    element = {"T": dtype, "float": np.dtype(np.float32), "double": np.dtype(np.float64),
               "long long": np.dtype(np.int64), "unsigned long long": np.dtype(np.uint64),
               "int": np.dtype(np.int32), "unsigned char": np.dtype(np.uint8)}
    base = param.replace("const ", "").replace("__restrict__", "").replace("*", " ")
    base = " ".join(base.split()[:-1])  # drop the parameter's name
    if "*" in param:
        if isinstance(arg, np.uint64):
            assert arg == 0, f"{where}: {param} gets a raw address"
            return
        assert isinstance(arg, _FakeArray), f"{where}: {param} gets {type(arg).__name__}"
        assert arg.flags.c_contiguous, f"{where}: {param} gets a strided array"
        assert arg.dtype == element[base], f"{where}: {param} gets {arg.dtype} elements"
    else:
        assert isinstance(arg, np.generic) and not isinstance(arg, np.ndarray), \
            f"{where}: {param} gets {type(arg).__name__}"
        assert np.dtype(type(arg)) == element[base], f"{where}: {param} gets {type(arg)}"


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple]]:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    calls: list[tuple[str, tuple]] = []

    def record(source, kernel, dtype, blocks, threads, args):
        params = _c_parameters(source)[kernel]
        where = f"{source.name}.{kernel}"
        _common.check_scalars(where, args)  # launch's own check, which the recording replaces
        assert len(args) == len(params), f"{where}: {len(args)} arguments for {len(params)}"
        for param, arg in zip(params, args):
            _check_argument(where, param, arg, np.dtype(dtype))
        sizes = (blocks if isinstance(blocks, tuple) else (blocks,)) + (
            threads if isinstance(threads, tuple) else (threads,))
        assert all(isinstance(v, int) and v > 0 for v in sizes), f"{where}: launch {sizes}"
        calls.append((where, args))

    for module_name in _modules():
        module = importlib.import_module(f"tinygrad_lab.kernels.cuda.{module_name}")
        monkeypatch.setattr(module, "launch", record)
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_launch_matches_the_c_parameters(monkeypatch: pytest.MonkeyPatch, dtype) -> None:
    calls = _calls(monkeypatch)
    for module_name in _modules():
        module = importlib.import_module(f"tinygrad_lab.kernels.cuda.{module_name}")
        for name, make_args in module.KERNELS.items():
            before = len(calls)
            out = getattr(module, name)(*make_args(np.dtype(dtype)))
            assert out is not NotImplemented, name
            assert len(calls) > before, f"{name} launched nothing"
    from tinygrad_lab.kernels.cuda import attention

    cp = sys.modules["cupy"]
    qkv = [cp.ones((2, 3, 5, 8), dtype) for _ in range(3)]
    out, lse = attention.flash_attention_forward(*qkv, causal=True)  # not registered (no op yet)
    assert out.shape == (2, 3, 5, 8) and lse.shape == (2, 3, 5)
    launched = {where.split(".")[1] for where, _ in calls}
    assert launched == {k for s in _sources() for k in s.kernels}  # every kernel of every source


def test_launchers_decline_what_the_kernels_do_not_take(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _calls(monkeypatch)
    from tinygrad_lab.kernels.cuda import activations, attention, conv, softmax

    cp = sys.modules["cupy"]
    x = cp.ones((4, 6), np.float32)
    assert activations.relu_forward(np.ones((4, 6), np.float32)) is NotImplemented  # host array
    assert activations.relu_forward(cp.ones((4, 6), np.int64)) is NotImplemented
    assert activations.relu_forward(x[:, ::2]) is NotImplemented  # strided
    assert activations.bias_act_forward(x, cp.ones(6, np.float32), "softplus") is NotImplemented
    assert activations.bias_act_forward(x, None, None) is x
    assert softmax.softmax_forward(x, 0) is NotImplemented
    assert softmax.softmax_forward(cp.ones((0, 3), np.float32)) is NotImplemented
    assert softmax.softmax_backward(x, cp.ones((4, 6), np.float64)) is NotImplemented
    with pytest.raises(IndexError, match="out of bounds"):
        softmax.softmax_cross_entropy_forward(x, cp.asarray(np.array([0, 1, 6, 2])))
    assert softmax.softmax_cross_entropy_forward(x, cp.asarray(np.array([0.0]))) \
        is NotImplemented  # float labels
    assert attention.masked_softmax_forward(cp.ones((2, 3, 3), np.float32), 1.0, False,
                                            cp.ones((4, 3), bool)) is NotImplemented
    assert conv.im2col(cp.ones((1, 1, 2, 2), np.float32), (3, 3), (1, 1), (0, 0),
                       (1, 1)) is NotImplemented  # empty output
    assert not calls
    # host (NumPy) labels and ids are copied over, as the references would
    loss, _ = softmax.softmax_cross_entropy_forward(x, np.array([0, 1, -1, 2]))
    assert loss.shape == () and calls[-1][0] == "softmax.cross_entropy_forward"
    from tinygrad_lab.kernels.cuda import embedding

    assert embedding.embedding_backward(x, np.array([1, 0, 1, 4]), 5).shape == (5, 6)
    assert embedding.embedding_backward(x, np.array([1, 0, 1, 5]), 5) is NotImplemented


# --- the multi-tensor optimizer path of Optimizer.step, on a stand-in device that has it ---------
@pytest.fixture
def multi_device():
    """A stand-in device whose kernel table names the CUDA multi-tensor steps: their launchers
    answer NotImplemented for its (NumPy) arrays, so the multi-step references run, through
    the same Optimizer.step path that takes one launch per group on a GPU."""
    from tinygrad_lab.backends import DeviceType, register_device, unregister_device
    from tinygrad_lab.testing.standin import StandinBackend

    names = ("sgd_multi_step", "adam_multi_step", "adamw_multi_step")
    register_device(DeviceType("multistandin", lambda index: StandinBackend(),
                               "tinygrad_lab.kernels.cuda", {n: f"optim:{n}" for n in names},
                               indexed=True))
    yield "multistandin"
    unregister_device("multistandin")


@pytest.mark.parametrize("make", [
    lambda ps: tinygrad_lab.optim.Adam(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: tinygrad_lab.optim.AdamW(ps, lr=1e-2),
    lambda ps: tinygrad_lab.optim.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True),
    lambda ps: tinygrad_lab.optim.SGD(ps, lr=1e-2),
])
def test_multi_tensor_step_equals_per_parameter_steps(multi_device: str, make) -> None:
    from tinygrad_lab.backends import get_backend
    from tinygrad_lab.optim import _fused_step
    from tinygrad_lab.tensor import Tensor

    rng = np.random.default_rng(0)
    start = [rng.standard_normal(s) for s in [(3, 4), (4,), (2, 2, 2), (0, 3)]]
    grads = [[rng.standard_normal(a.shape) for a in start] for _ in range(3)]
    results = []
    for device in ("cpu", multi_device):
        params = [Tensor(a.copy(), requires_grad=True).to(device).detach() for a in start]
        for p in params:
            p.requires_grad = True
        opt = make([{"params": params[:2]}, {"params": params[2:], "lr": 3e-2}])
        for k, step_grads in enumerate(grads):
            for p, g in zip(params, step_grads):
                p.grad = Tensor(g, device=device)
            if k == 2:
                params[3].grad = None  # a parameter without a gradient is skipped
            if device == "cpu":
                opt.step()
            else:
                assert get_backend(device).is_kernel(type(opt).__name__.lower() + "_multi_step")
                assert _fused_step(opt)
        results.append([p.numpy() for p in params])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_multi_tensor_tables_cover_every_element_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    from tinygrad_lab.kernels.cuda import optim

    cp = sys.modules["cupy"]
    params = [cp.ones(n, np.float32) for n in (2 * optim.CHUNK + 1, 0, 5)]
    states = [cp.ones(n, np.float32) for n in (2 * optim.CHUNK + 1, 0, 5)]
    ptrs, sizes, tensor_of, first, blocks = optim._tables([params, states])
    assert blocks == 4 and list(tensor_of) == [0, 0, 0, 2]
    assert list(first) == [0, optim.CHUNK, 2 * optim.CHUNK, 0] and list(sizes) == [
        2 * optim.CHUNK + 1, 0, 5]
    assert ptrs.shape == (2, 3) and ptrs[0, 1] == 0 and ptrs[1, 2] == states[2].data.ptr
    assert optim._tables([[params[1]], [states[1]]]) is None  # nothing to update


def test_launch_takes_numpy_scalars_and_refuses_python_ones() -> None:
    """np.float64 subclasses float: the check must pass it (it is the C double a float64
    kernel takes) and refuse the Python int/float/bool that CuPy would pass at its own width."""
    _common.check_scalars("k", (np.float64(1.0), np.float32(1.0), np.int32(3), np.int64(3),
                                np.uint64(0), np.bool_(True)))
    for bad in (1.0, 3, True):
        with pytest.raises(TypeError, match="untyped scalar argument"):
            _common.check_scalars("k", (np.float32(1.0), bad))

