"""``Problem``: what the planner contracts -- operands with legs, leg sizes, the output, grad flags.

A problem is the adapter's network for one layer shape, optionally with the activations ``x`` as
operand 0 (legs ``(TOKENS, *in legs)``, output ``(TOKENS, *out legs)``, i.e. ``y = x @ dW^T``),
else the dense ``dW`` (output ``(*out legs, *in legs)``). Each operand is one of

- ``"x"``: the activations, flattened to ``(T, N)``;
- ``"tensor"``: a node tensor (axes = its legs);
- ``"diagonal"``: a one-leg node whose leg is a hyperedge: a scaling, never a matrix;
- ``"circuit"``: a renormalized node (a Pauli circuit): contracted densely or gate by gate.

No torch here: the problem is structure plus sizes, and hashable (:meth:`Problem.key`), so plans
cache by it. ``T`` (the token count) is a leg size like any other; :meth:`Problem.with_tokens`
makes the same problem for another ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import SpecError

#: The leg name of the activations' token axis (T = product of x's leading dimensions).
TOKENS = "<T>"
KINDS = ("x", "tensor", "diagonal", "circuit")
#: Most operands a search handles: operand subsets are int64 bitmaps (numpy), 63 bits without the sign.
MAX_BITMAP_OPERANDS = 63
#: Relative slack on a known tree's cost used as a pruning cap, and under an exact lower bound: sizes
#: are summed as floats, so rounding must never prune the tree that set the cap or lift a bound above it.
COST_SLACK = 1e-9


@dataclass(frozen=True)
class Operand:
    """One input of the contraction: ``name``, ``legs`` (axis order), ``kind``, ``requires_grad``.

    ``passes`` (circuits only) is the number of state passes of the circuit, its cost per column:
    applying it to a ``(rows, N)`` state costs about ``2 * passes * rows * N * chunk`` flops.
    """

    name: str
    legs: tuple[str, ...]
    kind: str = "tensor"
    requires_grad: bool = True
    passes: int = 0
    chunk: int = 2


@dataclass(frozen=True)
class Problem:
    """A contraction to plan (see module docstring). Build one with :meth:`from_network`."""

    operands: tuple[Operand, ...]
    output: tuple[str, ...]
    sizes: tuple[tuple[str, int], ...]
    out_legs: tuple[str, ...]
    in_legs: tuple[str, ...]
    itemsize: int = 4
    scale: float = 1.0
    name: str = "network"

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_network(cls, network, in_features: int, out_features: int, *, tokens: int | None = None,
                     grad: bool | Mapping[str, bool] = True, x_grad: bool = False, itemsize: int = 4,
                     circuits: Mapping[str, tuple[int, int]] | None = None,
                     sizes: Mapping[str, int] | None = None) -> Problem:
        """The problem of ``network`` built for a layer ``(out_features, in_features)``.

        ``tokens``: T for ``x @ dW^T``, or None for dW itself. ``grad``: whether node tensors need
        gradients (one flag, or per node name). ``x_grad``: whether x does. ``circuits``: node name
        -> (state passes, chunk dimension) for renormalized nodes that may be applied gate by gate.
        """
        leg_sizes = dict(sizes) if sizes is not None else network.resolve(in_features, out_features)
        flags = grad if isinstance(grad, Mapping) else {n: bool(grad) for n in network.node_names}
        circuits = dict(circuits or {})
        ops = []
        for spec in network.nodes:
            kind = "diagonal" if spec.kind == "diagonal" else "tensor"
            passes, chunk = circuits.get(spec.name, (0, 2))
            if spec.name in circuits:
                kind = "circuit"
            ops.append(Operand(spec.name, tuple(spec.legs), kind, bool(flags.get(spec.name, True)),
                               int(passes), int(chunk)))
        out_legs, in_legs = tuple(network.open["out"]), tuple(network.open["in"])
        scale = network.scale_value(leg_sizes)
        problem = cls(tuple(ops), out_legs + in_legs, tuple(sorted(leg_sizes.items())), out_legs, in_legs,
                      itemsize, scale, network.name)
        if tokens is not None:
            problem = problem.with_tokens(tokens, x_grad=x_grad)
        return problem

    @classmethod
    def from_operands(cls, operands: Sequence[Operand], sizes: Mapping[str, int], out_legs: Sequence[str],
                      in_legs: Sequence[str], *, tokens: int | None = None, x_grad: bool = False,
                      itemsize: int = 4, scale: float = 1.0, name: str = "network") -> Problem:
        """A problem from explicit operands (tests, random networks)."""
        out_legs, in_legs = tuple(out_legs), tuple(in_legs)
        problem = cls(tuple(operands), out_legs + in_legs, tuple(sorted(dict(sizes).items())), out_legs,
                      in_legs, itemsize, float(scale), name)
        problem.check()
        return problem.with_tokens(tokens, x_grad=x_grad) if tokens is not None else problem

    # ------------------------------------------------------------- variants
    @property
    def has_x(self) -> bool:
        return bool(self.operands) and self.operands[0].kind == "x"

    @property
    def tokens(self) -> int | None:
        return self.size_dict.get(TOKENS) if self.has_x else None

    def with_tokens(self, tokens: int, *, x_grad: bool | None = None) -> Problem:
        """The same network applied to ``x`` of ``tokens`` rows: ``y[T, out] = x[T, in] dW^T``."""
        tokens = int(tokens)
        if tokens < 1:
            raise SpecError(f"the token count must be >= 1, got {tokens}", fix="pass --rows 1 or more")
        sizes = dict(self.sizes)
        sizes[TOKENS] = tokens
        if self.has_x:
            ops = self.operands
            if x_grad is not None:
                ops = (replace(ops[0], requires_grad=bool(x_grad)),) + ops[1:]
        else:
            ops = (Operand("x", (TOKENS,) + self.in_legs, "x", bool(x_grad)),) + self.operands
        return replace(self, operands=ops, output=(TOKENS,) + self.out_legs, sizes=tuple(sorted(sizes.items())))

    def without_x(self) -> Problem:
        """The dW problem (output ``(*out legs, *in legs)``)."""
        if not self.has_x:
            return self
        sizes = tuple((k, v) for k, v in self.sizes if k != TOKENS)
        return replace(self, operands=self.operands[1:], output=self.out_legs + self.in_legs, sizes=sizes)

    def with_grads(self, nodes: bool | Sequence[bool], x_grad: bool | None = None) -> Problem:
        """A copy with new requires-grad flags (one flag for every node, or one per node operand)."""
        ops = list(self.operands)
        start = 1 if self.has_x else 0
        flags = [nodes] * (len(ops) - start) if isinstance(nodes, bool) else list(nodes)
        for i, flag in zip(range(start, len(ops)), flags):
            ops[i] = replace(ops[i], requires_grad=bool(flag))
        if self.has_x and x_grad is not None:
            ops[0] = replace(ops[0], requires_grad=bool(x_grad))
        return replace(self, operands=tuple(ops))

    # ------------------------------------------------------------- queries
    @property
    def size_dict(self) -> dict[str, int]:
        return dict(self.sizes)

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.operands]

    @property
    def in_features(self) -> int:
        sizes = self.size_dict
        return math.prod(sizes[leg] for leg in self.in_legs)

    @property
    def out_features(self) -> int:
        sizes = self.size_dict
        return math.prod(sizes[leg] for leg in self.out_legs)

    def key(self, with_tokens: bool = True) -> tuple:
        """A hashable identity of the problem (structure, sizes, grads, dtype size, scale)."""
        sizes = self.sizes if with_tokens else tuple((k, v) for k, v in self.sizes if k != TOKENS)
        return (self.operands, self.output, sizes, self.itemsize, self.scale)

    def shapes(self) -> list[tuple[int, ...]]:
        """Each operand's shape (x as ``(T, N)``)."""
        sizes = self.size_dict
        out = []
        for op in self.operands:
            if op.kind == "x":
                out.append((sizes[TOKENS], self.in_features))
            else:
                out.append(tuple(sizes[leg] for leg in op.legs))
        return out

    def equation(self) -> str:
        """The einsum equation over all operands (x's in legs unfolded), for references."""
        from opt_einsum import get_symbol

        legs = sorted({leg for op in self.operands for leg in op.legs} | set(self.output))
        sym = {leg: get_symbol(i) for i, leg in enumerate(legs)}
        terms = ["".join(sym[leg] for leg in op.legs) for op in self.operands]
        return ",".join(terms) + "->" + "".join(sym[leg] for leg in self.output)

    def check(self) -> Problem:
        """Raise SpecError for legs without size, duplicate legs, or legs nothing connects."""
        sizes = self.size_dict
        count: dict[str, int] = {}
        for op in self.operands:
            if op.kind not in KINDS:
                raise SpecError(f"unknown operand kind {op.kind!r}", node=op.name, fix=f"use one of {KINDS}")
            if len(set(op.legs)) != len(op.legs):
                raise SpecError("has a repeated leg", node=op.name, fix="give every axis its own leg")
            if op.kind == "diagonal" and len(op.legs) != 1:
                raise SpecError("a diagonal operand has exactly one leg", node=op.name)
            for leg in op.legs:
                if leg not in sizes:
                    raise SpecError("has no size", node=op.name, leg=leg, fix="give every leg a size")
                count[leg] = count.get(leg, 0) + 1
        for leg in self.output:
            if leg not in count:
                raise SpecError("is an output leg no operand carries", leg=leg)
        for leg, carriers in count.items():
            if carriers == 1 and leg not in self.output:
                node = next(op.name for op in self.operands if leg in op.legs)
                raise SpecError("is held by one operand only and is not an output leg", node=node, leg=leg,
                                fix="connect it to another node, or make it an open leg")
        return self
