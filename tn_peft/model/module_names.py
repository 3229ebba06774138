r"""Module names: which modules a config's patterns pick, by PEFT's rules, in one place.

Every rule is here, and every pattern is compiled once (cached):

- ``target_modules`` / ``exclude_modules``: a string is a regex over the whole name (``re.fullmatch``);
  a list entry is a name, matching the module of that name or of that dotted suffix (``"query"``
  matches ``encoder.layer.0.attention.self.query``) -- :func:`match_name`;
- ``modules_to_save``: list entries as above, and every module inside a matched one
  (:func:`in_saved_module`). An entry is a name, never a regex, wherever it is read (the targets,
  the wrapped copies, a checkpoint's extra tensors), so ``['1|2']`` names a module called ``1|2``;
- ``layer_graph_args`` keys (PEFT's ``rank_pattern`` / ``alpha_pattern``): a key applies when
  ``re.match(rf"(.*\.)?({key})$", name)`` does; the first such key wins -- :func:`pattern_key`;
- ``layers_pattern``: the name of the ModuleList before a layer's index -- :func:`layer_index`.

A pattern may come from a stranger's ``adapter_config.json``, and Python's ``re`` runs without a
time limit: each one passes :func:`tn_peft.patterns.check_pattern` (bounded length and backtracking)
as matched, wrapper included, before it is compiled; a ``modules_to_save`` or list entry is a name,
bounded in length only.

>>> match_name("encoder.layer.0.attention.self.query", ["query", "value"])
True
>>> match_name("encoder.layer.0.attention.self.query", "query")
False
>>> in_saved_module("classifier.dense", ["classifier"]), in_saved_module("1", ["1|2"])
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from ..errors import SpecError
from ..limits import MAX_PATTERN_CHARS
from ..patterns import check_pattern

#: how each kind of pattern becomes a regex: (template, what the error calls it)
RULES = {
    "modules": ("{}", "module pattern"),                            # target_modules / exclude_modules strings
    "key": (r"(.*\.)?({})$", "layer_graph_args key"),               # pattern keys, as PEFT's get_pattern_key
    "layers": (r"(?:^|.*?\.){}\.(?P<idx>\d+)\.", "layers_pattern"),  # the layer index after <pattern>.
}
#: the layer index with no layers_pattern: the first ``.<name>.<index>.`` segment
_DEFAULT_INDEX = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")


def check_module_pattern(pattern: str, rule: str, field: str) -> re.Pattern:
    """``pattern`` as ``rule`` (:data:`RULES`) matches it, checked (:func:`tn_peft.patterns.check_pattern`:
    a SpecError naming ``field`` for a pattern too long, invalid, or that could backtrack for long) and
    compiled."""
    return _compiled(pattern, rule, field)


def compiled(pattern: str, rule: str) -> re.Pattern:
    """:func:`check_module_pattern` under the rule's own name; one compiled regex per pattern and rule."""
    return _compiled(pattern, rule, RULES[rule][1])


@lru_cache(maxsize=4096)
def _compiled(pattern: str, rule: str, field: str) -> re.Pattern:
    template = RULES[rule][0]
    regex = template.format(pattern) if isinstance(pattern, str) else pattern
    check_pattern(field, pattern, regex)
    return re.compile(regex)


def check_module_name(name: str, field: str) -> None:
    """SpecError unless ``name`` (a list entry: a module name, not a regex) is a non-empty string of at
    most :data:`~tn_peft.limits.MAX_PATTERN_CHARS` characters."""
    if not isinstance(name, str) or not name:
        raise SpecError(f"{field} entry {name!r} must be a non-empty module name", fix="pass e.g. ['classifier']")
    if len(name) > MAX_PATTERN_CHARS:
        raise SpecError(f"{field} entry {name[:40]!r}... is {len(name):,} characters, more than the limit of "
                        f"{MAX_PATTERN_CHARS:,} (tn_peft.limits.MAX_PATTERN_CHARS)",
                        fix="name the module by its last dotted parts")


def match_name(name: str, patterns: str | Iterable[str] | None) -> bool:
    """True when ``name`` matches ``patterns`` (a string: a regex over the whole name; a list: a name or
    a dotted suffix)."""
    if not patterns:
        return False
    if isinstance(patterns, str):
        return compiled(patterns, "modules").fullmatch(name) is not None
    return any(name == p or name.endswith(f".{p}") for p in patterns)


def in_saved_module(name: str, modules_to_save: Iterable[str] | None) -> bool:
    """True when ``name`` is, or lies inside, a module that ``modules_to_save`` names (:func:`match_name`
    on ``name`` and each of its dotted prefixes)."""
    saved = list(modules_to_save or ())
    if not saved:
        return False
    parts = name.split(".")
    return any(match_name(".".join(parts[:end]), saved) for end in range(len(parts), 0, -1))


def pattern_key(patterns: Iterable[str], module_name: str) -> str | None:
    r"""The first key of ``patterns`` (PEFT's ``rank_pattern`` / ``alpha_pattern``, tn_peft's
    ``layer_graph_args``) that applies to ``module_name``, or None. PEFT's ``get_pattern_key`` rule: a key
    matches when ``re.match(rf"(.*\.)?({key})$", module_name)`` does -- the whole name, a dotted suffix,
    or a regex over one; the first matching key in order wins.

    >>> pattern_key({"value": 2}, "encoder.layer.0.attention.self.value")
    'value'
    """
    for key in patterns:
        if compiled(key, "key").match(module_name):
            return key
    return None


def layer_index(name: str, layers_pattern: str | Iterable[str] | None = None) -> int | None:
    """The layer index in a module name, PEFT's rule (``check_target_module_exists``): the number after
    ``<pattern>.`` for a ``layers_pattern`` (first pattern that matches), else the first ``.<name>.<idx>.``
    segment; the first (outermost) index, never a nested one (MoE experts). None when there is none.

    >>> layer_index("encoder.layer.3.attention.self.query")
    3
    >>> layer_index("model.layers.1.mlp.experts.0.up", "layers")
    1
    >>> layer_index("pooler.dense") is None
    True
    """
    if not layers_pattern:
        match = _DEFAULT_INDEX.match(name)
    else:
        match = None
        for pattern in [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern:
            match = compiled(pattern, "layers").match(name)
            if match is not None:
                break
    return int(match["idx"]) if match else None
