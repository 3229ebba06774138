"""``Network``: an adapter as pure tensor-network structure (no torch).

The first step of the flow spec -> Network -> :class:`~tn_peft.adapter.adapter.Adapter` -> plan
(:mod:`tn_peft.planner`) -> program -> layer (:mod:`tn_peft.model.layers`): :mod:`tn_peft.graph.spec` expands a
graph file into a Network (spec imports network, never the other way), ``Network.build`` makes the
Adapter for one layer shape, whose planner turns each token count into a contraction program, which
the wrapped layer runs.

A network has nodes with named legs. A leg on two nodes is a bond; on three or more it is a
hyperedge (a diagonal node's leg is one); the open legs are ``out`` and ``in`` of the adapted
weight, each either one leg or a list of factor legs (``in = n1*n2*...``). Leg sizes stay symbolic
(expressions of the graph parameters, of the layer's ``in``/``out`` sizes and of other legs) until
:meth:`Network.resolve` or :meth:`Network.build` gives the layer's real sizes.

The adapter it describes is ``dW = scale * contract(nodes) -> [out legs..., in legs...]``, reshaped
to ``(out, in)``; with ``delta: true`` it is ``T(theta) - T(theta_0)`` (QuanTA).

Example (LoRA, ``dW = (alpha/r) B A``)::

    net = Network("lora", params={"rank": 4, "alpha": 8}, scale="alpha / rank")
    net.add_node("B", "dense", ["out", "r"], init="zeros")
    net.add_node("A", "dense", ["r", "in"], init="kaiming")
    net.set_size("r", "rank")
    net.to_einsum()   # ('ab,bc->ac', ['B', 'A'])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SpecError
from .expressions import ExpressionError, evaluate
from ..names import check_graph_name, check_name

OPEN_GROUPS = ("out", "in")


@dataclass
class NetworkNode:
    """One node of a network: its name, kind, legs (in tensor-axis order) and kind options.

    ``shared`` marks nodes that model integration creates once per layer shape and reuses across
    layers (LoTR's U and V). ``leg_sizes`` are sizes the node itself declares for some legs
    (they must agree with every other declaration of the same leg).
    """

    name: str
    kind: str
    legs: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    shared: bool = False
    leg_sizes: dict[str, Any] = field(default_factory=dict)
    line: int | None = None

    def to_spec(self) -> dict[str, Any]:
        legs: Any = list(self.legs)
        if self.leg_sizes:
            legs = {leg: self.leg_sizes.get(leg) for leg in self.legs}
        entry: dict[str, Any] = {"name": self.name, "kind": self.kind, "legs": legs}
        if self.shared:
            entry["shared"] = True
        if self.options:
            entry["options"] = copy.deepcopy(self.options)
        return entry


class Network:
    """A tensor network whose open legs are a layer's ``out`` and ``in`` (see module docstring)."""

    def __init__(self, name: str = "network", *, params: Mapping[str, Any] | None = None,
                 open: Mapping[str, str | Sequence[str]] | None = None,
                 sizes: Mapping[str, Any] | None = None, scale: Any = 1, delta: bool = False,
                 description: str = "", source: str | None = None) -> None:
        self.source = source
        self.name = check_graph_name(name, source=source)
        self.description = description
        self.params: dict[str, Any] = dict(params or {})
        for param in self.params:
            check_name(param, "parameter name", source=source)
        self.nodes: list[NetworkNode] = []
        self.open: dict[str, tuple[str, ...]] = {"out": ("out",), "in": ("in",)}
        if open:
            self.set_open(**{("in_" if k == "in" else k): v for k, v in open.items()})
        self.sizes: dict[str, Any] = dict(sizes or {})
        for leg in self.sizes:
            check_name(leg, "sizes key", source=source)
        self.scale = scale
        self.delta = bool(delta)
        #: What this network was expanded from (:class:`tn_peft.graph.spec.Template`: the spec mapping with its
        #: loops and ``{param}`` templates intact), whose ``expand(params)`` :meth:`with_params` calls to
        #: expand it again; None once built or edited in Python.
        self.template: Any = None
        self._validated: str | None = None  # the structure that last passed validate()

    # ----------------------------------------------------------------- builder
    def add_node(self, name: str, kind: str, legs: Sequence[str] | Mapping[str, Any], *,
                 shared: bool = False, line: int | None = None, **options: Any) -> Network:
        """Add a node; ``legs`` is a list of leg names, or a mapping leg -> size expression."""
        return self.add_node_options(name, kind, legs, options, shared=shared, line=line)

    def add_node_options(self, name: str, kind: str, legs: Sequence[str] | Mapping[str, Any],
                         options: Mapping[str, Any], *, shared: bool = False, line: int | None = None) -> Network:
        """:meth:`add_node` with the options as one mapping, whatever their keys (a spec's ``options:``);
        :meth:`validate` checks them against the node kind."""
        check_name(name, "node name", source=self.source, line=line)
        if any(n.name == name for n in self.nodes):
            raise SpecError("is defined twice", source=self.source, line=line, node=name,
                            fix="give every node a unique name")
        leg_sizes = {}
        if isinstance(legs, Mapping):
            leg_sizes = {k: v for k, v in legs.items() if v is not None}
            legs = list(legs)
        legs = tuple(check_name(leg, "leg name", source=self.source, line=line, node=name) for leg in legs)
        seen = set()
        for leg in legs:
            if leg in seen:
                raise SpecError("appears twice on the node (a trace), which adapters never need",
                                source=self.source, line=line, node=name, leg=leg,
                                fix="rename one of the two legs")
            seen.add(leg)
        self.nodes.append(NetworkNode(name, kind, legs, {str(k): v for k, v in options.items()}, shared, leg_sizes, line))
        self.template = None
        return self

    def set_open(self, out: str | Sequence[str] | None = None, in_: str | Sequence[str] | None = None,
                 **other: Any) -> Network:
        """Declare the open legs: ``out`` and ``in`` each a leg name or a list of factor legs."""
        if "in" in other:
            in_ = other.pop("in")
        if other:
            raise SpecError(f"open legs must be 'out' and 'in', got {sorted(other)}", source=self.source,
                            fix="list the open legs under the keys out: and in:")
        for group, legs in (("out", out), ("in", in_)):
            if legs is not None:
                legs = (legs,) if isinstance(legs, str) else tuple(legs)
                self.open[group] = tuple(check_name(leg, f"open {group} leg name", source=self.source)
                                         for leg in legs)
        self.template = None
        return self

    def set_size(self, leg: str, size: Any) -> Network:
        """Set a leg's size expression (``"rank"``, ``"2 * rank"``, an int)."""
        self.sizes[check_name(leg, "sizes key", source=self.source)] = size
        self.template = None
        return self

    # --------------------------------------------------------------- structure
    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> NetworkNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def open_legs(self) -> tuple[str, ...]:
        return self.open["out"] + self.open["in"]

    def legs(self) -> dict[str, list[str]]:
        """Leg name -> the nodes carrying it, in node order."""
        where: dict[str, list[str]] = {}
        for n in self.nodes:
            for leg in n.legs:
                where.setdefault(leg, []).append(n.name)
        return where

    def hyperedges(self) -> list[str]:
        """Legs carried by three or more nodes (or by two nodes and open)."""
        return [leg for leg, on in self.legs().items() if len(on) + (leg in self.open_legs) >= 3]

    def validate(self) -> Network:
        """Check the structure (not the sizes); raise SpecError naming the node and leg at fault.

        The check runs once per structure: a network unchanged since it passed (the same names, legs,
        kinds, options, open legs and sizes, however they were edited) returns at once, so building it
        for many layers validates it once."""
        key = self._structure_key()
        if key != self._validated:
            self._check_structure()
            self._validated = key
        return self

    def _structure_key(self) -> str:
        """Everything :meth:`_check_structure` reads, as one string."""
        return repr((self.name, list(self.params), self.open, self.sizes,
                     [(n.name, n.kind, n.legs, n.options, n.shared) for n in self.nodes]))

    def _check_structure(self) -> None:
        from ..nodes.kinds import check_options

        if not self.nodes:
            raise SpecError("the network has no nodes", source=self.source, fix="add at least one node")
        self._check_names()
        for n in self.nodes:
            check_options(n.kind, n.options, node=n.name, source=_where(self.source, n.line))
        where = self.legs()
        for group in OPEN_GROUPS:
            if not self.open[group]:
                raise SpecError(f"the open leg group {group!r} is empty", source=self.source,
                                fix=f"list at least one leg under open: {group}:")
        if len(set(self.open_legs)) != len(self.open_legs):
            raise SpecError("an open leg is listed twice", source=self.source,
                            fix="each factor leg of out/in must be a distinct leg")
        for leg in self.open_legs:
            if leg not in where:
                raise SpecError("is open but no node carries it", source=self.source, leg=leg,
                                fix="put the leg on a node, or remove it from open:")
        for leg, on in where.items():
            if len(on) == 1 and leg not in self.open_legs:
                node = self.node(on[0])
                raise SpecError("is on this node only and is not open", source=self.source,
                                line=node.line, node=node.name, leg=leg,
                                fix="connect it to another node, or list it under open: out/in")
        self._check_connected(where)

    def _check_names(self) -> None:
        """Every name again (attributes may have been edited since they were added): see :mod:`tn_peft.names`."""
        check_graph_name(self.name, source=self.source)
        for param in self.params:
            check_name(param, "parameter name", source=self.source)
        for leg in self.sizes:
            check_name(leg, "sizes key", source=self.source)
        for group in OPEN_GROUPS:
            for leg in self.open[group]:
                check_name(leg, f"open {group} leg name", source=self.source)
        for n in self.nodes:
            check_name(n.name, "node name", source=self.source, line=n.line)
            for leg in n.legs:
                check_name(leg, "leg name", source=self.source, line=n.line, node=n.name)

    def _check_connected(self, where: Mapping[str, list[str]]) -> None:
        # The activations carry every in leg and the output every out leg: both act as vertices,
        # so a Kronecker product (two blocks with no bond) is connected through them.
        adjacency: dict[str, set[str]] = {n.name: set() for n in self.nodes}
        adjacency["<in>"], adjacency["<out>"] = set(), set()
        for leg, on in where.items():
            members = list(on)
            if leg in self.open["in"]:
                members.append("<in>")
            if leg in self.open["out"]:
                members.append("<out>")
            for a in members:
                adjacency[a].update(b for b in members if b != a)
        seen, stack = {"<in>"}, ["<in>"]
        adjacency["<in>"].add("<out>")  # the adapted layer maps in -> out
        adjacency["<out>"].add("<in>")
        while stack:
            for nxt in adjacency[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        for n in self.nodes:
            if n.name not in seen:
                raise SpecError("is disconnected: no chain of legs joins it to out or in", source=self.source,
                                line=n.line, node=n.name,
                                fix="share a leg with another node (or make one of its legs open)")

    # ----------------------------------------------------------------- sizes
    def resolve(self, in_features: int, out_features: int) -> dict[str, int]:
        """Evaluate every leg size for a layer of shape (out_features, in_features).

        Unsized factor legs of ``out``/``in`` get a balanced factorization of what is left.
        Raises SpecError for undefined names, non-positive or non-integer sizes, sizes that
        disagree across a shared leg, and sizes that cannot be factored as asked.
        """
        from .sizes import resolve_sizes

        return resolve_sizes(self, in_features, out_features)

    # ----------------------------------------------------------------- einsum
    def symbols(self) -> dict[str, str]:
        """A one-character einsum symbol per leg (and ``"batch"`` for the activations' token axis)."""
        from opt_einsum import get_symbol

        names = list(self.legs()) + ["batch"]
        return {leg: get_symbol(i) for i, leg in enumerate(names)}

    def to_einsum(self, activations: bool = False) -> tuple[str, list[str]]:
        """The einsum equation of dW (or of ``x @ dW^T`` with ``activations=True``) and operand order.

        Operands are the node names in order; with ``activations`` the first operand is ``"x"`` with
        legs ``(batch, *in legs)``, and the output is ``(batch, *out legs)``.

        >>> Network().add_node("B", "dense", ["out", "r"]).add_node("A", "dense", ["r", "in"]).to_einsum()
        ('ab,bc->ac', ['B', 'A'])
        """
        sym = self.symbols()
        terms = ["".join(sym[leg] for leg in n.legs) for n in self.nodes]
        operands = self.node_names
        if activations:
            terms.insert(0, sym["batch"] + "".join(sym[leg] for leg in self.open["in"]))
            operands = ["x"] + operands
            output = sym["batch"] + "".join(sym[leg] for leg in self.open["out"])
        else:
            output = "".join(sym[leg] for leg in self.open_legs)
        return ",".join(terms) + "->" + output, operands

    # ------------------------------------------------------------------ spec
    def to_spec(self) -> dict[str, Any]:
        """The network as a JSON-serializable spec; :func:`tn_peft.graph.spec.network_from_spec` rebuilds it."""
        spec: dict[str, Any] = {"name": self.name}
        if self.description:
            spec["description"] = self.description
        spec["params"] = copy.deepcopy(self.params)
        spec["open"] = {g: (list(v) if len(v) != 1 else v[0]) for g, v in self.open.items()}
        spec["sizes"] = copy.deepcopy(self.sizes)
        spec["scale"] = self.scale
        if self.delta:
            spec["delta"] = True
        spec["nodes"] = [n.to_spec() for n in self.nodes]
        return spec

    def with_params(self, **overrides: Any) -> Network:
        """A copy with some parameters changed.

        A network loaded from a spec is expanded again from it (parameters may shape nodes: loops,
        ``{layers}`` options); one built in Python has concrete nodes, so its parameters only enter
        sizes and the scale, and the copy just takes the new values.
        """
        unknown = [k for k in overrides if k not in self.params]
        if unknown:
            raise SpecError(f"has no parameter {unknown[0]!r}", source=self.source,
                            fix=f"use one of: {', '.join(sorted(self.params))}")
        if self.template is not None:
            return self.template.expand({**self.params, **overrides})
        clone = copy.deepcopy(self)
        clone.params.update(overrides)
        return clone

    def scale_value(self, sizes: Mapping[str, int] | None = None) -> float:
        """The numeric scale (``alpha / rank`` for LoRA-style graphs)."""
        try:
            value = evaluate(self.scale, {**self.params, **(sizes or {})})
            number = float(value)
        except ExpressionError as exc:
            raise SpecError(f"scale: {exc}", source=self.source, fix="define the names under params:") from None
        except (TypeError, ValueError, OverflowError):
            raise SpecError(f"scale: {self.scale!r} is {value!r}, not a number", source=self.source,
                            fix="give the parameters it uses numbers") from None
        if not math.isfinite(number):
            raise SpecError(f"scale: {self.scale!r} is {number}, not a finite number", source=self.source,
                            fix="give the parameters it uses finite values (alpha: 8, not .inf)")
        return number

    def num_parameters(self, in_features: int, out_features: int) -> int:
        """Trainable parameters when built for a layer of shape (out_features, in_features)."""
        return self.build(in_features, out_features).num_parameters()

    def build(self, in_features: int, out_features: int, **kwargs: Any):
        """Create the :class:`~tn_peft.adapter.adapter.Adapter` (an ``nn.Module``) for one layer shape."""
        from ..adapter.adapter import Adapter

        return Adapter(self, in_features, out_features, **kwargs)

    def shared_nodes(self, in_features: int, out_features: int, *, device=None, dtype=None) -> dict[str, Any]:
        """New nodes (name -> module) for the nodes this graph shares between its layers of one shape
        (``shared: true``, as LoTR's U and V); pass them to :meth:`build` as ``shared_nodes``."""
        from ..nodes.base import create_node

        sizes = self.validate().resolve(in_features, out_features)
        return {spec.name: create_node(spec.kind, spec.name, spec.legs, tuple(sizes[leg] for leg in spec.legs),
                                       spec.options, source=self.source, checked=True).to(device=device, dtype=dtype)
                for spec in self.nodes if spec.shared}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Network) and self.to_spec() == other.to_spec()

    def __repr__(self) -> str:
        return f"Network({self.name!r}, nodes={self.node_names}, open={dict(self.open)})"


def _where(source: str | None, line: int | None) -> str | None:
    if source and line:
        return f"{source}:{line}"
    return source
