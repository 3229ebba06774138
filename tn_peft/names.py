"""The names a graph spec gives (legs, nodes, parameters, size keys, the graph): one rule, checked everywhere.

A spec comes from a file a stranger may have written, and its names travel far: into ``nn.ModuleDict``
keys, ``state_dict`` keys, the planner's problems and the comments of generated source. So every name is
an identifier, checked when a spec is loaded, when a Network is edited, validated or built, and when a
checkpoint's embedded spec is read; nothing else reaches the engine. Free text (``description``) is never
a name and is never checked.

- legs, nodes, parameters and size keys: :data:`NAME_PATTERN`, ``[A-Za-z_][A-Za-z0-9_]{0,63}``;
- the graph's name: :data:`GRAPH_NAME_PATTERN`, the same plus ``-`` and ``.`` after the first character
  (file stems such as ``my-graph``).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import SpecError

#: legs, nodes, parameters and size keys: an ASCII identifier of at most 64 characters
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
#: a graph's name: an identifier that may also hold '-' and '.' (at most 64 characters)
GRAPH_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_.-]{0,63}"

_NAME = re.compile(NAME_PATTERN)
_GRAPH_NAME = re.compile(GRAPH_NAME_PATTERN)
#: how much of a refused value's repr an error shows
_SHOWN = 80


def shown(value: Any) -> str:
    """``repr(value)``, ASCII only and cut to a readable length (a refused name may be a payload)."""
    text = ascii(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def is_name(value: Any) -> bool:
    """Whether ``value`` is a valid leg, node, parameter or size-key name."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(value: Any, what: str, *, source: str | None = None, line: int | None = None,
               node: str | None = None) -> str:
    """``value`` if it matches :data:`NAME_PATTERN`, else one SpecError naming ``what`` and the value.

    ``what``: the field, e.g. ``"leg name"``, ``"node name"``, ``"parameter name"``, ``"sizes key"``.
    """
    if is_name(value):
        return value
    raise SpecError(f"{what} {shown(value)} is not a name: names of legs, nodes, parameters and sizes must match "
                    f"{NAME_PATTERN} (a letter or '_', then letters, digits or '_', 64 characters at most)",
                    source=source, line=line, node=node if node is None or is_name(node) else shown(node),
                    fix="rename it, e.g. r, out_0, U1")


def check_graph_name(value: Any, *, source: str | None = None) -> str:
    """``value`` if it matches :data:`GRAPH_NAME_PATTERN`, else one SpecError naming the value."""
    if isinstance(value, str) and _GRAPH_NAME.fullmatch(value) is not None:
        return value
    raise SpecError(f"name: {shown(value)} is not a graph name: it must match {GRAPH_NAME_PATTERN}",
                    source=source, fix="name the graph like my_graph or my-graph")


def graph_name_from_stem(stem: str) -> str:
    """A valid graph name for a spec file without ``name:``: its file stem, other characters as '_'."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:64] or "network"
    return name if name[0].isalpha() or name[0] == "_" else ("g_" + name)[:64]
