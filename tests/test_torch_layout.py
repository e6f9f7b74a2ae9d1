"""Loading PyTorch weights (nn/torch_layout.py): the same model built in torch and here, torch's
state_dict loaded with layout="torch" (or nn.from_torch), outputs equal in float64; and the
errors: a transposed-only fit names the layout, a missing or unexpected key is named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from tinygrad_lab import Tensor, nn

RNG = np.random.default_rng(0)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def _out(value: Any) -> np.ndarray:
    while isinstance(value, tuple):  # (output, state) of recurrent layers, (out, weights) of MHA
        value = value[0]
    return value.detach().numpy() if isinstance(value, torch.Tensor) else value.numpy()


def _compare(ours: nn.Module, theirs: torch.nn.Module, x: np.ndarray,
             call: Callable[[Any, Any], Any] = lambda m, x: m(x)) -> None:
    torch.manual_seed(0)
    theirs = theirs.double()
    with torch.no_grad():  # move every buffer and weight away from its initial value
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for b in theirs.buffers():
            if b.is_floating_point():
                b.copy_(torch.rand_like(b) + 0.5)
    nn.from_torch(ours, theirs)
    ours.eval()
    theirs.eval()
    want = _out(call(theirs, torch.from_numpy(x)))
    got = _out(call(ours, Tensor(x)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


F64 = {"dtype": np.float64}
CASES: list[tuple[str, Callable[[], nn.Module], Callable[[], torch.nn.Module], tuple[int, ...]]] = [
    ("linear", lambda: nn.Linear(4, 3, **F64), lambda: torch.nn.Linear(4, 3), (5, 4)),
    ("linear-square", lambda: nn.Linear(3, 3, **F64), lambda: torch.nn.Linear(3, 3), (2, 3)),
    ("conv1d", lambda: nn.Conv1d(2, 4, 3, padding=1, groups=2, **F64),
     lambda: torch.nn.Conv1d(2, 4, 3, padding=1, groups=2), (2, 2, 6)),
    ("conv2d", lambda: nn.Conv2d(3, 4, 3, stride=2, padding="valid", **F64),
     lambda: torch.nn.Conv2d(3, 4, 3, stride=2), (2, 3, 7, 7)),
    ("conv-transpose2d", lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1,
                                                    output_padding=1, groups=2, **F64),
     lambda: torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
     (2, 4, 3, 3)),
    ("batchnorm1d", lambda: nn.BatchNorm1d(3, **F64), lambda: torch.nn.BatchNorm1d(3), (4, 3)),
    ("batchnorm2d", lambda: nn.BatchNorm2d(3, **F64), lambda: torch.nn.BatchNorm2d(3),
     (2, 3, 4, 4)),
    ("layernorm", lambda: nn.LayerNorm(5, **F64), lambda: torch.nn.LayerNorm(5), (2, 3, 5)),
    ("groupnorm", lambda: nn.GroupNorm(2, 4, **F64), lambda: torch.nn.GroupNorm(2, 4),
     (2, 4, 3, 3)),
    ("instancenorm2d", lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True, **F64),
     lambda: torch.nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 4, 4)),
    ("rnn", lambda: nn.RNN(3, 4, num_layers=2, batch_first=True, **F64),
     lambda: torch.nn.RNN(3, 4, num_layers=2, batch_first=True), (2, 5, 3)),
    ("lstm", lambda: nn.LSTM(3, 4, num_layers=2, **F64), lambda: torch.nn.LSTM(3, 4, 2),
     (5, 2, 3)),
    ("gru", lambda: nn.GRU(3, 4, **F64), lambda: torch.nn.GRU(3, 4), (5, 2, 3)),
    ("sequential", lambda: nn.Sequential(nn.Linear(4, 8, **F64), nn.ReLU(),
                                         nn.Linear(8, 8, **F64), nn.Tanh(),
                                         nn.Linear(8, 2, **F64)),
     lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
                                 torch.nn.Tanh(), torch.nn.Linear(8, 2)), (3, 4)),
    ("sequential-cnn",
     lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding="same", **F64), nn.BatchNorm2d(4, **F64),
                           nn.ReLU(), nn.MaxPool2d(2), nn.Upsample(scale_factor=2),
                           nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3, **F64)),
     lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding="same"),
                                 torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.Upsample(scale_factor=2),
                                 torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(16, 3)), (2, 1, 6, 6)),
]


@pytest.mark.parametrize(("make_ours", "make_theirs", "shape"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_torch_weights_give_torch_outputs(make_ours: Callable, make_theirs: Callable,
                                          shape: tuple[int, ...]) -> None:
    _compare(make_ours(), make_theirs(), _x(*shape))


def test_embedding() -> None:
    ours, theirs = nn.Embedding(7, 3, **F64), torch.nn.Embedding(7, 3).double()
    ours.load_state_dict(theirs.state_dict(), layout="torch")
    ids = np.array([[0, 6, 2], [2, 2, 1]])
    np.testing.assert_allclose(ours(ids).numpy(), theirs(torch.from_numpy(ids)).detach().numpy())


def test_multihead_attention_packed_projections() -> None:
    ours = nn.MultiHeadAttention(8, 2, **F64)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    _compare(ours, theirs, _x(2, 5, 8), lambda m, x: m(x, x, x, need_weights=False)
             if isinstance(m, torch.nn.Module) else m(x))


def test_transformer_block_is_a_pre_norm_encoder_layer() -> None:
    ours = nn.TransformerBlock(8, 2, 16, **F64)
    theirs = torch.nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, batch_first=True, norm_first=True,
        activation=lambda t: torch.nn.functional.gelu(t, approximate="tanh"))
    _compare(ours, theirs, _x(2, 4, 8))


def test_our_layout_of_a_transposed_weight_names_the_torch_layout() -> None:
    state = {k: v.detach().numpy() for k, v in torch.nn.Linear(4, 3).state_dict().items()}
    with pytest.raises(ValueError, match=r"looks like torch's \(out, in\) layout: pass "
                                         r"layout='torch'"):
        nn.Linear(4, 3).load_state_dict(state)


def test_torch_tensors_without_a_layout_are_refused() -> None:
    """A square Linear would take torch's (out, in) weight silently and compute x @ W^T^T."""
    with pytest.raises(ValueError, match="layout='torch'"):
        nn.Linear(3, 3).load_state_dict(torch.nn.Linear(3, 3).state_dict())
    with pytest.raises(ValueError, match="layout must be"):
        nn.Linear(3, 3).load_state_dict({}, layout="keras")


def test_missing_and_unexpected_torch_keys_are_named() -> None:
    state = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)).state_dict()
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    missing = {k: v for k, v in state.items() if k != "1.bias"}
    with pytest.raises(KeyError, match=r"1\.bias \(for layers\.1\.bias\)"):
        model.load_state_dict(missing, layout="torch")
    with pytest.raises(KeyError, match=r"unexpected torch keys \['2\.weight'\]"):
        model.load_state_dict({**state, "2.weight": torch.zeros(2, 2)}, layout="torch")
    model.load_state_dict(missing, layout="torch", strict=False)  # loads what is there
    np.testing.assert_array_equal(model[1].weight.numpy(), state["1.weight"].numpy().T)


def test_a_bidirectional_torch_lstm_has_keys_ours_lacks() -> None:
    with pytest.raises(KeyError, match="weight_ih_l0_reverse"):
        nn.from_torch(nn.LSTM(3, 4), torch.nn.LSTM(3, 4, bidirectional=True))


def test_a_shape_that_does_not_fit_after_mapping_is_named() -> None:
    with pytest.raises(ValueError, match="weight has shape"):
        nn.from_torch(nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 5))


def test_from_torch_takes_a_state_dict_and_returns_the_module() -> None:
    theirs = torch.nn.Linear(4, 3)
    ours = nn.Linear(4, 3)
    assert nn.from_torch(ours, theirs.state_dict()) is ours
    np.testing.assert_allclose(ours.weight.numpy(), theirs.weight.detach().numpy().T)
    with pytest.raises(TypeError, match="state_dict mapping"):
        nn.from_torch(ours, [1, 2])


def test_a_shared_weight_loads_once() -> None:
    ours = nn.Sequential(nn.Linear(3, 3, **F64), nn.Tanh())
    ours.append(ours[0])  # the same layer twice, as torch.nn.Sequential(a, tanh, a)
    first = torch.nn.Linear(3, 3)
    theirs = torch.nn.Sequential(first, torch.nn.Tanh(), first)
    _compare(ours, theirs, _x(2, 3))
