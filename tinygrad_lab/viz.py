"""The autograd tape as a picture: `tl.viz.tape(loss)` captures the graph that backward will
walk (every node's op, input and output shapes, bytes saved for backward), and `to_dot` writes
it as Graphviz DOT, with each node's forward and backward time when given the records of a
`tl.profile()` region. `render` turns it into SVG (or PNG) when Graphviz's `dot` is installed.

    with tl.profile() as records:
        loss = F.cross_entropy(model(x), y)
        graph = tl.viz.tape(loss, names=model)   # before backward frees the tape
        loss.backward()
    graph.render("step.svg", records)            # step.dot always; step.svg if `dot` exists

Capture before backward: backward releases what the nodes saved (and the graph with it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinygrad_lab.tensor import Tensor


@dataclass
class TapeNode:
    """One op of the tape (or a leaf: a parameter or an input that requires a gradient)."""

    key: int  # id() of the op's node (what profile records call "node"), or of the leaf tensor
    op: str
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    dtype: str
    saved_bytes: int = 0
    inputs: list[int] = field(default_factory=list)  # keys of the nodes feeding this one
    leaf: bool = False


@dataclass
class Tape:
    """The captured graph: nodes in the order backward's topological walk would run forward."""

    nodes: list[TapeNode]
    output: int

    @property
    def saved_bytes(self) -> int:
        return sum(n.saved_bytes for n in self.nodes)

    def to_dot(self, records: Iterable[Mapping[str, Any]] | None = None) -> str:
        """Graphviz DOT: ops as boxes (op, shapes, saved bytes, forward / backward ms when
        `records` from tl.profile() are given), leaves as ellipses, edges along the data."""
        times: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for r in records or ():
            if "node" in r:
                times[r["node"]][r["phase"]] += float(r["ms"])
        index = {n.key: i for i, n in enumerate(self.nodes)}  # short names in the DOT
        lines = ["digraph tape {", "  rankdir=BT;",
                 '  node [fontname="Helvetica", fontsize=10];',
                 f'  label="autograd tape: {len(self.nodes)} nodes, '
                 f'{self.saved_bytes:,} bytes saved for backward"; labelloc=t;']
        for n in self.nodes:
            if n.leaf:
                label = f"{n.op}\\n{_shape(n.out_shape)} {n.dtype}"
                lines.append(f'  n{index[n.key]} [shape=ellipse, style=filled, '
                             f'fillcolor="#e8f0fe", label="{_escape(label)}"];')
                continue
            ins = ", ".join(_shape(s) for s in n.in_shapes)
            label = f"{n.op}\\n({ins}) -> {_shape(n.out_shape)}\\nsaved {n.saved_bytes:,} B"
            if n.key in times:
                fwd, bwd = times[n.key].get("forward", 0.0), times[n.key].get("backward", 0.0)
                label += f"\\nfwd {fwd:.3f} ms  bwd {bwd:.3f} ms"
            color = "#fde2e1" if n.key == self.output else "#ffffff"
            lines.append(f'  n{index[n.key]} [shape=box, style="rounded,filled", '
                         f'fillcolor="{color}", label="{_escape(label)}"];')
        for n in self.nodes:
            for src in n.inputs:
                lines.append(f"  n{index[src]} -> n{index[n.key]};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render(self, path: str | os.PathLike[str],
               records: Iterable[Mapping[str, Any]] | None = None) -> Path:
        """Write PATH.dot, and PATH itself in its format (.svg, .png, .pdf) with Graphviz's
        `dot` when that is installed; without it, FileNotFoundError says so (the .dot is
        written either way). Returns the picture's path (or the .dot's, for a .dot path)."""
        path = Path(path)
        dot_path = path if path.suffix == ".dot" else path.with_suffix(".dot")
        dot_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = dot_path.with_name(f".{dot_path.name}.tmp{os.getpid()}")
        tmp.write_text(self.to_dot(records))
        os.replace(tmp, dot_path)
        if path.suffix == ".dot":
            return dot_path
        exe = shutil.which("dot")
        if exe is None:
            raise FileNotFoundError(f"Graphviz's `dot` is not installed: wrote {dot_path}; "
                                    f"render it with `dot -T{path.suffix[1:]} {dot_path}`")
        subprocess.run([exe, f"-T{path.suffix[1:]}", str(dot_path), "-o", str(path)],
                       check=True, capture_output=True)
        return path


def tape(output: Tensor, names: Any = None) -> Tape:
    """Capture the graph behind `output` (a tensor that requires grad, before backward).
    `names`: a Module (its parameters are labelled by their dotted names) or a mapping
    {name: tensor} for the leaves."""
    if not isinstance(output, Tensor):
        raise TypeError(f"tape: expected a Tensor, got {type(output).__name__}")
    if output._ctx is None:
        raise ValueError("tape: this tensor was not made by an op that records a gradient "
                         "(no graph: it is a leaf, or it was computed under no_grad)")
    if output._ctx.saved is None:
        raise ValueError("tape: backward already freed this graph; capture it before "
                         "backward (or call backward(retain_graph=True))")
    label_of: dict[int, str] = {}
    if names is not None:
        pairs = names.named_parameters() if hasattr(names, "named_parameters") else names.items()
        label_of = {id(t): name for name, t in pairs}
    nodes: dict[int, TapeNode] = {}
    order: list[int] = []
    stack: list[tuple[Tensor, bool]] = [(output, False)]
    while stack:  # iterative post-order: inputs before the ops that read them
        t, expanded = stack.pop()
        ctx = t._ctx
        key = id(ctx) if ctx is not None else id(t)
        if expanded:
            if key not in nodes:
                nodes[key] = _node(t, key, label_of)
                order.append(key)
            continue
        if key in nodes:
            continue
        stack.append((t, True))
        if ctx is not None:
            for parent in ctx.parents:
                if parent.requires_grad:
                    stack.append((parent, False))
    return Tape([nodes[k] for k in order], id(output._ctx))


def _node(t: Tensor, key: int, label_of: dict[int, str]) -> TapeNode:
    ctx = t._ctx
    if ctx is None:
        return TapeNode(key, label_of.get(id(t), "input"), [], t.shape, str(t.dtype), leaf=True)
    parents = [p for p in ctx.parents]
    return TapeNode(
        key, ctx.name, [p.shape for p in parents], t.shape, str(t.dtype), ctx.saved_bytes(),
        [id(p._ctx) if p._ctx is not None else id(p) for p in parents if p.requires_grad])


def _shape(s: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


def _escape(label: str) -> str:
    return label.replace('"', '\\"')
