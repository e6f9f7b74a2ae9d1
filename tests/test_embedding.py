"""Embedding: the op (forward gather, scatter-add backward) against NumPy and float64 central
differences, the Numba kernels against the references, out-of-range ids, the layer's
initialisation, and torch.nn.Embedding when torch is importable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_lab as tl
from tinygrad_lab import Tensor, nn
from tinygrad_lab.backends import REFERENCES, get_backend
from tinygrad_lab.nn import functional as F
from tinygrad_lab.testing import gradcheck
from tinygrad_lab.testing import strategies as tst

kernels = pytest.importorskip("tinygrad_lab.kernels.embedding")  # needs numba


@st.composite
def tables_and_ids(draw: st.DrawFn, max_rows: int = 5, max_dim: int = 4):
    """(weight (V, D) float64, ids (...) int64) with small V, so ids repeat often."""
    rows, dim = draw(st.integers(1, max_rows)), draw(st.integers(1, max_dim))
    weight = draw(tst.arrays((rows, dim)))
    shape = draw(tst.shapes(max_dims=3, max_side=4))
    ids = draw(st.lists(st.integers(0, rows - 1), min_size=int(np.prod(shape)),
                        max_size=int(np.prod(shape))))
    return weight, np.asarray(ids, dtype=np.int64).reshape(shape)


def np_scatter(g: np.ndarray, ids: np.ndarray, rows: int) -> np.ndarray:
    """The backward by a plain loop: row v sums g over the positions where ids == v."""
    out = np.zeros((rows, g.shape[-1]), g.dtype)
    for position, v in enumerate(ids.reshape(-1)):
        out[v] += g.reshape(-1, g.shape[-1])[position]
    return out


# --- the op -----------------------------------------------------------------------------------
@given(case=tables_and_ids())
def test_embedding_forward_matches_numpy(case, cpu_path):
    weight, ids = case
    out = F.embedding(ids, Tensor(weight))
    assert out.shape == ids.shape + weight.shape[1:]
    np.testing.assert_array_equal(out.numpy(), weight[ids])


@given(case=tables_and_ids())
def test_embedding_gradcheck_with_repeated_ids(case, cpu_path):
    weight, ids = case
    assert gradcheck(lambda w: F.embedding(ids, w), weight)


def test_embedding_backward_adds_repeated_ids_and_leaves_unused_rows_zero(cpu_path):
    w = Tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    ids = np.array([[1, 3, 1], [1, 0, 3]])
    g = np.random.default_rng(0).standard_normal((2, 3, 3))
    F.embedding(ids, w).backward(g)
    expected = np_scatter(g, ids, 4)
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(w.grad.numpy()[2], 0.0)
    np.testing.assert_allclose(w.grad.numpy()[1], g[0, 0] + g[0, 2] + g[1, 0])


def test_embedding_accepts_lists_int_tensors_int32_and_scalar_ids(cpu_path):
    w = Tensor(np.arange(10.0, dtype=np.float32).reshape(5, 2), requires_grad=True)
    np.testing.assert_array_equal(F.embedding([4, 0], w).numpy(), [[8, 9], [0, 1]])
    ids = Tensor(np.array([[2], [2]], dtype=np.int32))
    np.testing.assert_array_equal(F.embedding(ids, w).numpy(), [[[4, 5]], [[4, 5]]])
    scalar = F.embedding(np.int64(3), w)
    assert scalar.shape == (2,) and scalar.dtype == np.float32
    scalar.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy()[3], [1, 1])
    assert w.grad.dtype == np.float32


def test_embedding_empty_ids(cpu_path):
    w = Tensor(np.ones((3, 4)), requires_grad=True)
    out = F.embedding(np.zeros((0, 2), dtype=np.int64), w)
    assert out.shape == (0, 2, 4)
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.zeros((3, 4)))


@pytest.mark.parametrize("bad", [5, -1, 17])
def test_out_of_range_ids_name_the_id_and_the_vocabulary(bad, cpu_path):
    w = Tensor(np.zeros((5, 2)))
    with pytest.raises(IndexError, match=rf"id {bad} .*vocabulary of 5"):
        F.embedding(np.array([[0, bad], [1, 2]]), w)


@pytest.mark.parametrize("name", ["embedding_forward", "embedding_backward"])
@pytest.mark.parametrize("fn", ["reference", "kernel"])
def test_named_functions_check_ids_themselves(name, fn):
    """The reference raises; the kernel hands bad ids to it (NotImplemented) through the backend."""
    with tl.use_kernels():
        f = REFERENCES[name] if fn == "reference" else get_backend("cpu").resolve(name)
    ids = np.array([0, 9])
    args = (np.zeros((4, 3)), ids) if name == "embedding_forward" else (np.zeros((2, 3)), ids, 4)
    with pytest.raises(IndexError, match="id 9 is out of range for a vocabulary of 4"):
        f(*args)


def test_float_ids_are_a_type_error():
    with pytest.raises(TypeError, match="ids must be integers"):
        F.embedding(np.array([0.0, 1.0]), Tensor(np.zeros((3, 2))))


def test_weight_must_be_two_dimensional():
    with pytest.raises(ValueError, match=r"weight must be \(num_embeddings, dim\)"):
        F.embedding([0], Tensor(np.zeros(3)))


# --- kernels against the references ----------------------------------------------------------
KERNEL_SHAPES = [
    (7, 5, (3,)),  # one column block: the serial path
    (9, 40, (6, 5)),  # three column blocks, the last partial
    (50, 70, (40, 30)),  # above PARALLEL_MIN: the parallel paths
    (3, 16, ()),  # a single id
    (4, 8, (0, 3)),  # no ids
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,dim,shape", KERNEL_SHAPES)
def test_kernels_equal_the_references_bit_for_bit(rows, dim, shape, dtype):
    rng = np.random.default_rng(rows * dim)
    weight = rng.standard_normal((rows, dim)).astype(dtype)
    ids = rng.integers(0, min(rows, 4), size=shape)  # at most 4 distinct ids: many repeats
    g = rng.standard_normal(shape + (dim,)).astype(dtype)
    out = kernels.embedding_forward(weight, ids)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, REFERENCES["embedding_forward"](weight, ids))
    grad = kernels.embedding_backward(g, ids, rows)
    assert grad.dtype == dtype and grad.shape == (rows, dim)
    # the kernel adds each element's terms in id order, as np.add.at does: equal, not just close
    np.testing.assert_array_equal(grad, REFERENCES["embedding_backward"](g, ids, rows))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_through_the_backend_take_strided_inputs(dtype):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((40, 6)).astype(dtype)[::2]  # (20, 6), rows strided
    ids = rng.integers(0, 20, size=(8, 10)).T  # (10, 8), transposed
    g = rng.standard_normal((8, 10, 6)).astype(dtype).transpose(1, 0, 2)  # (10, 8, 6)
    backend = get_backend("cpu")
    with tl.use_kernels():
        assert backend.is_kernel("embedding_forward") and backend.is_kernel("embedding_backward")
        out = backend.call("embedding_forward", weight, ids)
        grad = backend.call("embedding_backward", g, ids, 20)
    np.testing.assert_array_equal(out, weight[ids])
    np.testing.assert_allclose(grad, np_scatter(g, ids, 20), rtol=1e-5 if dtype == np.float32
                               else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)


def test_kernels_send_other_dtypes_to_the_reference():
    weight = np.arange(6, dtype=np.float16).reshape(3, 2)
    assert kernels.embedding_forward(weight, np.array([2, 2])) is NotImplemented
    with tl.use_kernels():
        out = get_backend("cpu").call("embedding_forward", weight, np.array([2, 2]))
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, weight[[2, 2]])


# --- the layer --------------------------------------------------------------------------------
def test_embedding_layer_initialises_standard_normal_and_is_seeded():
    tl.manual_seed(3)
    layer = nn.Embedding(1000, 64)
    w = layer.weight.numpy()
    assert w.shape == (1000, 64) and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01
    tl.manual_seed(3)
    np.testing.assert_array_equal(nn.Embedding(1000, 64).weight.numpy(), w)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert repr(layer) == "Embedding(1000, 64)"


def test_embedding_layer_forward_backward_and_bad_sizes():
    layer = nn.Embedding(6, 3, dtype=np.float64)
    ids = np.array([[5, 0, 5]])
    out = layer(ids)
    np.testing.assert_array_equal(out.numpy(), layer.weight.numpy()[ids])
    out.sum().backward()
    np.testing.assert_array_equal(layer.weight.grad.numpy()[:, 0], [1, 0, 0, 0, 0, 2])
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        nn.Embedding(0, 3)


def test_embedding_matches_torch(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((10, 7))
    ids = rng.integers(0, 10, size=(4, 6))
    g = rng.standard_normal((4, 6, 7))
    theirs = torch.nn.Embedding(10, 7).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(weight))
    out_t = theirs(torch.from_numpy(ids))
    out_t.backward(torch.from_numpy(g))
    ours = nn.Embedding(10, 7, dtype=np.float64)
    ours.weight.data[...] = weight
    ours.to(device.device)
    out = ours(ids)  # NumPy ids and gradient: the layer and backward move them
    out.backward(g)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                               rtol=1e-12, atol=1e-12)
