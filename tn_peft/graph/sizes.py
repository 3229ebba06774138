"""Leg sizes: evaluate a Network's symbolic sizes for one layer shape.

Sizes are expressions of the graph parameters, the layer's ``in``/``out`` and other legs; factor
legs of ``out``/``in`` without a size get a balanced factorization of what is left
(``in = n1 * n2 * ...``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import SpecError
from ..factorize import balanced_factors
from ..limits import (
    MAX_NODE_ELEMENTS,  # a node that would be larger is refused before anything is allocated
)
from .expressions import ExpressionError, evaluate


def resolve_sizes(net, in_features: int, out_features: int) -> dict[str, int]:
    """Evaluate every leg size for a layer of shape (out_features, in_features).

    Unsized factor legs of ``out``/``in`` get a balanced factorization of what is left.
    Raises SpecError for undefined names, non-positive or non-integer sizes, sizes that
    disagree across a shared leg, and sizes that cannot be factored as asked.
    """
    scope: dict[str, Any] = dict(net.params)
    scope.update({"in": int(in_features), "out": int(out_features)})
    declared: dict[str, list[tuple[str, Any]]] = {}
    for leg, expr in net.sizes.items():
        declared.setdefault(leg, []).append(("sizes", expr))
    for n in net.nodes:
        for leg, expr in n.leg_sizes.items():
            declared.setdefault(leg, []).append((n.name, expr))
    sizes: dict[str, int] = {}
    for group, total in (("out", int(out_features)), ("in", int(in_features))):
        legs = net.open[group]
        if len(legs) == 1 and legs[0] not in declared:
            declared.setdefault(legs[0], []).append(("open", group))
    pending = dict(declared)
    factored: set[str] = set()
    # Sizes may refer to other legs (and to balanced factors of out/in): evaluate in passes.
    while True:
        progressed = _size_pass(net, pending, scope, sizes)
        for group, total in (("out", int(out_features)), ("in", int(in_features))):
            legs = net.open[group]
            if group not in factored and not any(leg in pending for leg in legs):
                _factor_open(net, group, total, sizes)
                factored.add(group)
                progressed = True
        if not pending and len(factored) == 2:
            break
        if not progressed:
            leg = next(iter(pending))
            raise SpecError(f"size {pending[leg][0][1]!r} refers to legs whose size is never given",
                            source=net.source, leg=leg, fix="give those legs sizes under sizes:")
    for leg, on in net.legs().items():
        if leg not in sizes:
            node = net.node(on[0])
            raise SpecError("has no size", source=net.source, line=node.line, node=node.name, leg=leg,
                            fix=f"add it under sizes: (e.g. {leg}: rank)")
    _check_node_sizes(net, sizes)
    return sizes


def _check_node_sizes(net, sizes: dict[str, int]) -> None:
    """Refuse a node whose tensor would exceed :data:`MAX_NODE_ELEMENTS`, naming its largest leg."""
    for node in net.nodes:
        elements = math.prod(sizes[leg] for leg in node.legs)
        if elements > MAX_NODE_ELEMENTS:
            leg = max(node.legs, key=lambda name: sizes[name])
            raise SpecError(f"would hold {elements:.3g} elements (legs {', '.join(f'{g}={sizes[g]}' for g in node.legs)}), "
                            f"more than the limit of {MAX_NODE_ELEMENTS:,} (tn_peft.limits.MAX_NODE_ELEMENTS)",
                            source=net.source, line=node.line, node=node.name, leg=leg,
                            fix="lower that leg's size (a rank or bond under sizes:)")

def _size_pass(net, pending: dict[str, list[tuple[str, Any]]], scope: Mapping[str, Any],
               sizes: dict[str, int]) -> bool:
    progressed = False
    for leg in list(pending):
        values = []
        for origin, expr in pending[leg]:
            try:
                values.append((origin, expr, evaluate(expr, {**scope, **sizes})))
            except ExpressionError as exc:
                if _undefined_leg(exc, net.legs()):
                    break
                raise SpecError(str(exc), source=net.source, leg=leg,
                                node=None if origin in ("sizes", "open") else origin,
                                fix="define the name under params:, or fix the expression") from None
        else:
            sizes[leg] = _check_size(net, leg, values)
            del pending[leg]
            progressed = True
    return progressed

def _check_size(net, leg: str, values: list[tuple[str, Any, Any]]) -> int:
    first = None
    for origin, expr, value in values:
        node = None if origin in ("sizes", "open") else origin
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"size {expr!r} = {value!r} is not an integer", source=net.source,
                            node=node, leg=leg, fix="use integer arithmetic (// instead of /)")
        if value <= 0:
            raise SpecError(f"size {expr!r} = {value} is not positive", source=net.source,
                            node=node, leg=leg, fix="choose parameters that make every size >= 1")
        if first is None:
            first = (origin, expr, value)
        elif value != first[2]:
            raise SpecError(
                f"sizes disagree: {first[0]} says {first[1]!r} = {first[2]}, {origin} says {expr!r} = {value}",
                source=net.source, node=node, leg=leg, fix="give the leg one size everywhere")
    return first[2]

def _factor_open(net, group: str, total: int, sizes: dict[str, int]) -> None:
    legs = net.open[group]
    known = [leg for leg in legs if leg in sizes]
    unknown = [leg for leg in legs if leg not in sizes]
    product = math.prod(sizes[leg] for leg in known)
    if not unknown:
        if product != total:
            raise SpecError(
                f"the {group} factor legs {list(legs)} multiply to {product}, but the layer's {group} size is {total}",
                source=net.source, leg=legs[0], fix=f"choose factor sizes whose product is {total}, or leave them out "
                                                       "to get a balanced factorization")
        return
    if total % product:
        raise SpecError(f"the given {group} factors multiply to {product}, which does not divide {total}",
                        source=net.source, leg=known[0], fix="choose factors that divide the layer size")
    split = balanced_factors(total // product, len(unknown))
    if split is None:
        raise SpecError(
            f"cannot split {group} = {total // product} into {len(unknown)} factors of at least 2",
            source=net.source, leg=unknown[0],
            fix="use fewer factors (e.g. fewer cores), or a family that does not fold this size")
    sizes.update(zip(unknown, split))


def _undefined_leg(exc: ExpressionError, legs: Iterable[str]) -> bool:
    text = str(exc)
    return any(text.startswith(f"{leg!r} is not defined") for leg in legs)
