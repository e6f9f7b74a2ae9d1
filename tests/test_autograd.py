"""Backward semantics of the tape: accumulation, reuse, no_grad, freeing, errors, dtypes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import tinygrad_lab as tl
from tinygrad_lab import Tensor


def _leaf(*shape: int, seed: int = 0) -> Tensor:
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# --- accumulation and reuse ------------------------------------------------------------------
def test_backward_accumulates_across_calls() -> None:
    x = _leaf(3)
    (x * x).sum().backward()
    first = x.grad.numpy().copy()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)
    np.testing.assert_allclose(first, 2 * x.numpy())


def test_zero_grad_resets() -> None:
    x = _leaf(3)
    x.sum().backward()
    x.zero_grad()
    assert x.grad is None


def test_reused_tensor_sums_gradients() -> None:
    x = _leaf(4)
    y = x * 3.0 + x * x + x.exp()  # x used in three places
    y.sum().backward()
    expected = 3.0 + 2 * x.numpy() + np.exp(x.numpy())
    np.testing.assert_allclose(x.grad.numpy(), expected)


def test_same_tensor_twice_in_one_op() -> None:
    x = _leaf(2, 3)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


def test_leaves_fed_by_one_add_get_distinct_grad_arrays() -> None:
    a, b = _leaf(3, seed=1), _leaf(3, seed=2)
    (a + b).sum().backward()
    assert a.grad.data is not b.grad.data
    a.grad.data[0] = 123.0
    assert b.grad.numpy()[0] == 1.0


def test_backward_gradient_argument_is_not_aliased() -> None:
    a, b = _leaf(3, seed=1), _leaf(3, seed=2)
    seed = np.ones(3)
    (a + b).backward(seed)
    seed[:] = 7.0
    np.testing.assert_array_equal(a.grad.numpy(), np.ones(3))
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3))


# --- graph building ----------------------------------------------------------------------------
def test_no_grad_builds_no_graph() -> None:
    x = _leaf(3)
    with tl.no_grad():
        y = (x * 2).exp().sum()
    assert not y.requires_grad
    assert y.is_leaf
    assert tl.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_enable_grad_inside_no_grad() -> None:
    x = _leaf(3)
    with tl.no_grad(), tl.enable_grad():
        y = (x * 2).sum()
    assert y.requires_grad


def test_detach_cuts_the_tape() -> None:
    x = _leaf(3)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), 2 * x.numpy())
    (d * x).sum().backward()  # only the x factor is differentiated
    np.testing.assert_allclose(x.grad.numpy(), d.numpy())


def test_constants_get_no_grad() -> None:
    x, c = _leaf(3), Tensor(np.ones(3))
    (x * c).sum().backward()
    assert c.grad is None and x.grad is not None


def test_astype_to_integer_leaves_the_tape() -> None:
    y = _leaf(3).astype(np.int64)
    assert y.dtype == np.int64 and not y.requires_grad


# --- freeing and retain_graph ------------------------------------------------------------------
def test_backward_twice_without_retain_graph_raises() -> None:
    x = _leaf(3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_backward_twice_with_retain_graph() -> None:
    x = _leaf(3)
    y = (x * x).exp().sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_deep_chain_has_no_recursion_error() -> None:
    x = _leaf(2)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(2, 1.0001**5000))


# --- errors ------------------------------------------------------------------------------------
def test_non_scalar_backward_needs_a_gradient() -> None:
    y = _leaf(2, 3) * 2
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        y.backward()


def test_backward_gradient_of_wrong_shape_raises() -> None:
    y = _leaf(2, 3) * 2
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(np.ones((3, 2)))


def test_integer_tensor_cannot_require_grad() -> None:
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.arange(3, dtype=np.int64), requires_grad=True)
    with pytest.raises(TypeError, match="int32"):
        Tensor(np.arange(3, dtype=np.int32)).requires_grad_()


@pytest.mark.parametrize(
    ("a", "b", "op"),
    [
        ((3, 4), (5, 6), lambda x, y: x @ y),
        ((2, 3, 4), (5, 4, 6), lambda x, y: x @ y),
        ((3, 4), (5, 6), lambda x, y: x + y),
        ((3, 4), (5, 6), lambda x, y: x - y),
        ((3, 4), (5, 6), lambda x, y: x * y),
        ((3, 4), (5, 6), lambda x, y: x / y),
        ((3, 4), (5, 6), lambda x, y: x**y),
        ((3, 4), (5, 6), lambda x, y: x.maximum(y)),
        ((3, 4), (5, 6), lambda x, y: x.minimum(y)),
        ((3, 4), (5, 6), lambda x, y: tl.where(x > 0, x, y)),
        ((3, 4), (5, 6), lambda x, y: x < y),
    ],
)
def test_shape_mismatch_errors_name_both_shapes(
    a: tuple, b: tuple, op: Callable[[Tensor, Tensor], Tensor]
) -> None:
    x, y = Tensor(np.ones(a)), Tensor(np.ones(b))
    with pytest.raises(ValueError) as info:
        op(x, y)
    assert str(a) in str(info.value) and str(b) in str(info.value), str(info.value)


# --- dtypes and conversions ----------------------------------------------------------------------
def test_constructor_dtypes() -> None:
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor([1, 2]).dtype == np.float32
    assert Tensor(3.0).dtype == np.float32
    assert Tensor(np.zeros(2, dtype=np.float64)).dtype == np.float64
    assert Tensor(np.zeros(2, dtype=np.float32)).dtype == np.float32
    assert Tensor(np.arange(3)).dtype == np.arange(3).dtype
    assert Tensor(np.arange(3, dtype=np.int32)).dtype == np.int32


def test_comparisons_return_bool_without_grad() -> None:
    x, y = _leaf(4, seed=1), _leaf(4, seed=2)
    for out in (x < y, x <= y, x > y, x >= y, x == y, x != y, x > 0.0):
        assert out.dtype == np.bool_
        assert not out.requires_grad
    np.testing.assert_array_equal((x < y).numpy(), x.numpy() < y.numpy())


def test_accessors() -> None:
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert x.dtype == np.float64
    assert x.device == "cpu"
    assert x.to("cpu") is x
    assert isinstance(x.numpy(), np.ndarray)
    np.testing.assert_array_equal(x.numpy(), np.arange(6.0).reshape(2, 3))
    assert x.sum().item() == 15.0 and isinstance(x.sum().item(), float)
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        x.item()


def test_grad_dtype_follows_leaf_through_casts() -> None:
    x = _leaf(3)
    x.astype(np.float32).sum().backward()
    assert x.grad.dtype == np.float64
    y = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (y.astype(np.float64) * 2.0).sum().backward()
    assert y.grad.dtype == np.float32


# --- profiling -------------------------------------------------------------------------------
def test_profile_records_forward_and_backward() -> None:
    x = _leaf(2, 3)
    with tl.profile() as records:
        (x.tanh() * 2.0).sum().backward()
    phases = {(r["op"], r["phase"]) for r in records}
    assert {
        ("Tanh", "forward"),
        ("Tanh", "backward"),
        ("Sum", "forward"),
        ("Sum", "backward"),
    } <= phases
    tanh = next(r for r in records if r["op"] == "Tanh" and r["phase"] == "forward")
    assert tanh["in_shapes"] == [(2, 3)] and tanh["out_shape"] == (2, 3) and tanh["ms"] >= 0
    with tl.profile() as outside:
        pass
    assert outside == []


# --- post-accumulate-grad hooks (what data-parallel's bucketed all-reduce waits on) -----------
def _mlp_and_names() -> tuple[tl.nn.Module, dict[int, str]]:
    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(4, 5, activation="relu"),
                             tl.nn.Linear(5, 6, activation="relu"), tl.nn.Linear(6, 3))
    return model, {id(p): name for name, p in model.named_parameters()}


def test_post_accumulate_grad_hooks_fire_in_reverse_order_of_use() -> None:
    model, names = _mlp_and_names()
    fired: list[tuple[str, list[str]]] = []

    def hook(p: Tensor) -> None:  # which parameters have a gradient when this one completes
        fired.append((names[id(p)], [names[id(q)] for q in model.parameters()
                                     if q.grad is not None]))

    for p in model.parameters():
        p.register_post_accumulate_grad_hook(hook)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4)))
    tl.nn.functional.cross_entropy(model(x), np.array([0, 2])).backward()
    assert [name for name, _ in fired] == ["layers.2.weight", "layers.2.bias",
                                           "layers.1.weight", "layers.1.bias",
                                           "layers.0.weight", "layers.0.bias"]
    # the last layer's gradient is complete (and its hook runs) before backward has reached
    # the first layer: that is the window in which its all-reduce can overlap the rest
    assert fired[0][1] == ["layers.2.weight"]


def test_post_accumulate_grad_hook_fires_once_after_every_use() -> None:
    w = _leaf(3)
    seen: list[np.ndarray] = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    a, b = w * 2.0, (w * w).exp()  # w feeds three edges of two nodes, and one node twice
    (a.sum() + b.sum() + (w * w).sum()).backward()
    expected = 2.0 + 2 * w.numpy() * np.exp(w.numpy() ** 2) + 2 * w.numpy()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], expected)
    np.testing.assert_allclose(w.grad.numpy(), expected)


def test_post_accumulate_grad_hook_through_multi_output_nodes_and_unused_outputs() -> None:
    w = _leaf(4, 3)
    seen: list[np.ndarray] = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    parts = w.unbind(0)  # one node, four outputs, two of them unused; and w is used again
    ((parts[0] * parts[1]).sum() + (w * 3.0).sum()).backward()
    expected = np.full((4, 3), 3.0)
    expected[0] += w.numpy()[1]
    expected[1] += w.numpy()[0]
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], expected)


def test_post_accumulate_grad_hook_skips_leaves_without_gradient_and_removes() -> None:
    w, unused = _leaf(3), _leaf(3, seed=1)
    calls: list[str] = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append("w"))
    unused.register_post_accumulate_grad_hook(lambda t: calls.append("unused"))
    (w * 2.0).sum().backward()
    assert calls == ["w"]
    handle.remove()
    (w * 2.0).sum().backward()
    assert calls == ["w"]
    with pytest.raises(RuntimeError, match="leaf"):
        (w * 2.0).register_post_accumulate_grad_hook(lambda t: None)


def test_post_accumulate_grad_hooks_die_with_their_tensor() -> None:
    import gc

    from tinygrad_lab import tensor

    gc.collect()  # earlier tests' hooked tensors
    before = tensor._hooked_leaves
    model, _ = _mlp_and_names()
    for p in model.parameters():  # each hook refers back to the model: a cycle
        p.register_post_accumulate_grad_hook(lambda t, m=model: None)
    assert tensor._hooked_leaves == before + len(model.parameters())
    del model, p
    gc.collect()
    assert tensor._hooked_leaves == before  # the cycle was freed, and backward is free again
