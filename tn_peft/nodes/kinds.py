"""What a graph spec may say about each node kind, without torch: the built-in kinds' options (with
their defaults), whether each is a Stiefel kind, and the module that defines it.

A spec is validated against this table (:meth:`tn_peft.graph.network.Network.validate`), so checking a
graph file never imports torch. The classes stay the truth about building a node: a built-in class whose
keyword options differ from its row here fails at import (:meth:`tn_peft.nodes.base.Node.__init_subclass__`).
Kinds a user registers (``class MyNode(Node, kind="my_kind")``) are read from their class, which is
already imported, with torch, by the time a spec names them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError


@dataclass(frozen=True)
class KindInfo:
    """One node kind as a spec sees it: ``options`` name -> default, ``stiefel`` (orthonormal columns),
    ``module`` the module that registers its class."""

    options: dict[str, Any]
    stiefel: bool
    module: str


_STIEFEL_INIT = {"init": "random", "init_scale": 1.0}
_LIE = {"cols": None, "rank": None, **_STIEFEL_INIT}

#: the built-in kinds, each defined (and registered) by its module
BUILTIN_KINDS: dict[str, KindInfo] = {
    "dense": KindInfo({"init": "normal", "std": None, "fan_in_legs": None}, False, "tn_peft.nodes.dense"),
    "diagonal": KindInfo({"init": "zeros", "std": 1.0, "bits": 0}, False, "tn_peft.nodes.diagonal"),
    "givens": KindInfo({"cols": None, **_STIEFEL_INIT}, True, "tn_peft.nodes.givens"),
    "householder": KindInfo({"cols": None, **_STIEFEL_INIT}, True, "tn_peft.nodes.householder"),
    "exp": KindInfo(dict(_LIE), True, "tn_peft.nodes.lie"),
    "cayley": KindInfo(dict(_LIE), True, "tn_peft.nodes.lie"),
    "taylor": KindInfo({"cols": None, "rank": None, "order": 4, **_STIEFEL_INIT}, True, "tn_peft.nodes.lie"),
    "pauli": KindInfo({"cols": None, "layers": 1, "construction": "auto", "wires": None, "max_wire": 0,
                       "init": None, "init_scale": 1.0, "frame": "none", "basis": "first", "bits": 0},
                      True, "tn_peft.nodes.circuit.pauli"),
}


def _registered() -> dict[str, Any]:
    """Kinds whose classes are registered so far (empty while :mod:`tn_peft.nodes.base` is not loaded)."""
    base = sys.modules.get("tn_peft.nodes.base")
    return dict(base.REGISTRY) if base is not None else {}


def kind_info(kind: str, *, node: str | None = None, source: str | None = None) -> KindInfo:
    """The :class:`KindInfo` of a built-in or registered kind, or a SpecError listing the known kinds."""
    info = BUILTIN_KINDS.get(kind)
    if info is not None:
        return info
    cls = _registered().get(kind)
    if cls is not None:
        from .base import StiefelNode

        return KindInfo(cls.option_names(), issubclass(cls, StiefelNode), cls.__module__)
    known = ", ".join(sorted(set(BUILTIN_KINDS) | set(_registered())))
    raise SpecError(f"unknown node kind {kind!r}", node=node, source=source,
                    fix=f"use one of: {known}; or register a new kind by subclassing "
                        f"tn_peft.nodes.Node with kind=...")


def check_options(kind: str, options: dict[str, Any], *, node: str | None = None,
                  source: str | None = None) -> None:
    """Raise SpecError if the kind is unknown or ``options`` holds a key it does not take."""
    allowed = kind_info(kind, node=node, source=source).options
    for key in options:
        if key not in allowed:
            raise SpecError(f"node kind {kind!r} has no option {key!r}", node=node, source=source,
                            fix=f"use one of: {', '.join(sorted(allowed)) or '(none)'}")
