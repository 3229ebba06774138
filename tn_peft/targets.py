"""Which modules an :class:`~tn_peft.config.AdapterConfig` adapts: PEFT's matching rules.

Which layer types can be adapted, and their shapes, is :data:`tn_peft.layers.LAYER_TYPES`.

Matching (exactly as PEFT's ``check_target_module_exists``):

- a string is a regex that must match the whole module name (``re.fullmatch``);
- a list matches a name exactly or as a dotted suffix (``"query"`` matches ``...self.query``);
- ``"all-linear"`` takes every ``nn.Linear`` and GPT-2 ``Conv1D`` except the output head;
- ``exclude_modules`` (same rules) and modules listed in ``modules_to_save`` are never adapted;
- ``layers_to_transform`` keeps only modules whose layer index (:func:`layer_index`) is listed.

>>> match_name("encoder.layer.0.attention.self.query", ["query", "value"])
True
>>> match_name("encoder.layer.0.attention.self.query", "query")
False
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from torch import nn

from .config import ALL_LINEAR
from .errors import SpecError
from .layers import ModulesToSave, TnLayer, is_linear, layer_type

#: Head module names PEFT excludes from ``all-linear`` for classification models.
CLASSIFIER_HEAD_NAMES = ("score", "classifier")


def match_name(name: str, patterns: str | Iterable[str] | None) -> bool:
    """True when ``name`` matches ``patterns`` (regex: whole name; list: exact or dotted suffix)."""
    if not patterns:
        return False
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith(f".{p}") for p in patterns)


def in_modules_to_save(name: str, modules_to_save: Iterable[str] | None) -> bool:
    """True when ``name`` is, or lies inside, a module listed in ``modules_to_save`` (PEFT's rule)."""
    return any(re.match(rf"(^|.*\.){m}($|\..*)", name) for m in (modules_to_save or ()))


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
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)
    else:
        match = None
        for pattern in [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", name)
            if match is not None:
                break
    return int(match["idx"]) if match else None


def output_head_names(model: nn.Module) -> set[str]:
    """Names of the output head's modules: output embeddings, and top-level ``score``/``classifier``."""
    heads: list[nn.Module] = []
    get_output = getattr(model, "get_output_embeddings", None)
    if callable(get_output):
        try:
            out = get_output()
        except (NotImplementedError, AttributeError):  # some models do not implement it
            out = None
        if isinstance(out, nn.Module):
            heads.append(out)
    for attr in CLASSIFIER_HEAD_NAMES:
        head = getattr(model, attr, None) if _is_pretrained(model) else None
        if isinstance(head, nn.Module):
            heads.append(head)
    names: set[str] = set()
    for head in heads:
        for name, module in model.named_modules():
            if module is head:
                names.add(name)
                names.update(f"{name}.{sub}" for sub, _ in head.named_modules() if sub)
    return names


def find_targets(model: nn.Module, target_modules: Any, exclude_modules: Any = None,
                 modules_to_save: Iterable[str] | None = None, *, layers_to_transform: int | list[int] | None = None,
                 layers_pattern: str | list[str] | None = None) -> list[str]:
    """Module names of ``model`` to adapt, in ``named_modules`` order.

    With ``layers_to_transform`` (PEFT's semantics, an empty list meaning "all"), only modules whose
    :func:`layer_index` is listed (or equals the int) are kept.

    Raises SpecError when nothing matches (listing some module names), when ``layers_to_transform`` is
    given and a matched module's name holds no layer index (PEFT skips such modules silently; tn_peft
    names them), and, through :func:`tn_peft.layers.layer_type`, when a matched module is not a layer tn_peft
    can adapt.
    """
    all_linear = isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR
    heads = output_head_names(model) if all_linear else set()
    inner: set[str] = set()  # modules inside our own wrappers are never targets
    for name, module in model.named_modules():
        if isinstance(module, (TnLayer, ModulesToSave)):
            inner.update(f"{name}.{sub}" for sub, _ in module.named_modules() if sub)
    found = []
    for name, module in model.named_modules():
        if not name or name in inner:
            continue
        if match_name(name, exclude_modules) or in_modules_to_save(name, modules_to_save):
            continue
        if all_linear:
            if is_linear(module) and name not in heads:
                found.append(name)
        elif match_name(name, target_modules):
            layer_type(module, name)
            found.append(name)
    using_indexes = layers_to_transform is not None and (
        len(layers_to_transform) != 0 if isinstance(layers_to_transform, list) else True)
    if using_indexes:
        wanted = {layers_to_transform} if isinstance(layers_to_transform, int) else set(layers_to_transform)
        indexes = {name: layer_index(name, layers_pattern) for name in found}
        missing = [name for name, index in indexes.items() if index is None]
        if missing:
            how = (f"after layers_pattern={layers_pattern!r} ('<pattern>.<index>.')" if layers_pattern
                   else "(no '.<name>.<index>.' segment)")
            raise SpecError(
                f"layers_to_transform={layers_to_transform!r} was given but no layer index can be found in targeted "
                f"module {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + f" {how}",
                fix="set layers_pattern to the name of the ModuleList holding the layers (e.g. 'layer', 'layers', "
                    "'h'), or leave the module out through target_modules / exclude_modules")
        found = [name for name in found if indexes[name] in wanted]
        if not found:
            seen = sorted({i for i in indexes.values() if i is not None})
            raise SpecError(
                f"layers_to_transform={layers_to_transform!r} matched no targeted module of {type(model).__name__} "
                f"(target_modules={target_modules!r})",
                fix=f"the targeted modules' layer indices are {seen}")
    if not found:
        sample = [n for n, _ in model.named_modules() if n][:12]
        raise SpecError(
            f"target_modules={target_modules!r} matched no module of {type(model).__name__}",
            fix="a list entry must equal a module name or its last dotted parts, a string is a regex over the whole "
                f"name; module names look like: {', '.join(sample)}")
    return found


def _is_pretrained(model: nn.Module) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is optional
        return False
    return isinstance(model, PreTrainedModel)
