"""einsum as a composition of Tensor ops (diagonal picks, sums, permute, reshape, matmul), so
its gradient is theirs and it runs on every device.

Operands are contracted left to right, two at a time. For a pair, each letter is one of:
batch (in both, still needed later), contracted (in both, not needed later), left-only, or
right-only; the pair becomes one batched matmul (B, M, K) @ (B, K, N). Letters only one
operand has and nobody needs later are summed away first. A letter repeated inside one
operand ("ii->i") takes the diagonal.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any

from tinygrad_lab.flops import numel

if TYPE_CHECKING:
    from tinygrad_lab.tensor import Tensor

_LETTERS = string.ascii_letters


def _parse(equation: str, ndims: list[int]) -> tuple[list[str], str]:
    """Each operand's letters and the output's, '...' expanded into spare capital letters."""
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"einsum: the equation has {len(terms)} operands, got {len(ndims)} "
                         "tensors")
    used = set(eq) - set(".,->")
    if not used <= set(_LETTERS):
        raise ValueError(f"einsum: subscripts must be letters, got {equation!r}")
    spare = [c for c in reversed(_LETTERS) if c not in used]
    ell_n = max((n - len(t.replace("...", "")) for t, n in zip(terms, ndims) if "..." in t),
                default=0)
    ell = "".join(spare[:ell_n][::-1])
    expanded = []
    for t, n in zip(terms, ndims):
        if "..." in t:
            k = n - len(t.replace("...", ""))
            if k < 0:
                raise ValueError(f"einsum: operand {t!r} has more subscripts than dimensions")
            t = t.replace("...", ell[ell_n - k:])
        if len(t) != n:
            raise ValueError(f"einsum: subscripts {t!r} do not match an operand with {n} "
                             "dimensions")
        expanded.append(t)
    if arrow:
        out = out.replace("...", ell)  # without '...' in the output they are summed away
        for c in out:
            if c not in "".join(expanded):
                raise ValueError(f"einsum: output subscript {c!r} appears in no operand")
        if len(set(out)) != len(out):
            raise ValueError(f"einsum: output subscripts repeat in {equation!r}")
    else:
        counts = {c: "".join(expanded).count(c) for c in set("".join(expanded))}
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    return expanded, out


def _diagonal(x: Tensor, letters: str) -> tuple[Tensor, str]:
    """Take the diagonal over every letter repeated in one operand."""
    while len(set(letters)) != len(letters):
        c = next(ch for ch in letters if letters.count(ch) > 1)
        i, j = letters.index(c), letters.index(c, letters.index(c) + 1)
        if x.shape[i] != x.shape[j]:
            raise ValueError(f"einsum: subscript {c!r} has sizes {x.shape[i]} and {x.shape[j]}")
        order = [k for k in range(x.ndim) if k not in (i, j)] + [i, j]
        x = x.permute(order)  # (..., n, n)
        n = x.shape[-1]
        ar = x._backend.xp.arange(n)  # made on the device: no host copy per call
        x = x[(slice(None),) * (x.ndim - 2) + (ar, ar)]  # (..., n)
        letters = "".join(letters[k] for k in range(len(letters)) if k not in (i, j)) + c
    return x, letters


def _sum_away(x: Tensor, letters: str, keep: set[str]) -> tuple[Tensor, str]:
    axes = [k for k, c in enumerate(letters) if c not in keep]
    if axes:
        x = x.sum(axis=tuple(axes))
        letters = "".join(c for c in letters if c in keep)
    return x, letters


def _contract(a: Tensor, la: str, b: Tensor, lb: str, keep: set[str]) -> tuple[Tensor, str]:
    """One batched matmul over the pair; the result's letters are batch + left + right."""
    batch = [c for c in la if c in lb and c in keep]
    inner = [c for c in la if c in lb and c not in keep]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    sizes: dict[str, int] = {}
    for c in batch + inner:  # a letter of size 1 in one operand broadcasts against the other
        sa, sb = a.shape[la.index(c)], b.shape[lb.index(c)]
        if sa != sb and 1 not in (sa, sb):
            raise ValueError(f"einsum: subscript {c!r} has sizes {sa} and {sb}")
        sizes[c] = sb if sa == 1 else sa
    for c in left:
        sizes[c] = a.shape[la.index(c)]
    for c in right:
        sizes[c] = b.shape[lb.index(c)]

    def arrange(x: Tensor, lx: str, first: list[str], second: list[str]) -> Tensor:
        order = [lx.index(c) for c in batch + first + second]
        x = x.permute(order) if order != list(range(x.ndim)) else x
        target = tuple(sizes[c] for c in batch + first + second)
        if x.shape != target:
            x = x.expand(*target)
        bs = numel(sizes[c] for c in batch)
        return x.reshape(bs, numel(sizes[c] for c in first), numel(sizes[c] for c in second))

    am = arrange(a, la, left, inner)  # (B, M, K)
    bm = arrange(b, lb, inner, right)  # (B, K, N)
    z = am.matmul(bm)  # (B, M, N)
    letters = "".join(batch + left + right)
    return z.reshape(*[sizes[c] for c in letters]), letters


def einsum(equation: str, *operands: Any) -> Tensor:
    """Sum of products over the subscripts of `equation` (torch.einsum), e.g.
    einsum("bij,bjk->bik", a, b); operands may also come as one list. Differentiable: it is
    built from diagonal picks, sums, permute, reshape and matmul."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum: needs at least one operand")
    terms, out = _parse(equation, [t.ndim for t in operands])
    tensors = list(operands)
    letters = list(terms)
    for k in range(len(tensors)):
        tensors[k], letters[k] = _diagonal(tensors[k], letters[k])

    def needed(after: int) -> set[str]:
        later = set(out)
        for lx in letters[after:]:
            later |= set(lx)
        return later

    x, lx = _sum_away(tensors[0], letters[0], needed(1))
    for k in range(1, len(tensors)):
        y, ly = _sum_away(tensors[k], letters[k], needed(k + 1) | set(lx))
        keep = needed(k + 1)
        x, lx = _sum_away(x, lx, keep | set(ly))
        x, lx = _contract(x, lx, y, ly, keep)
    x, lx = _sum_away(x, lx, set(out))
    if lx != out:
        x = x.permute([lx.index(c) for c in out])
    return x
