"""Adapters in a model, the way PEFT does it: :mod:`.config` (``AdapterConfig``, plain data),
:mod:`.targets` (which modules, with which network), :mod:`.layers` (the wrapped layers),
:mod:`.base_layers` (quantized base layers), :mod:`.model` (``get_model``, ``TnPeftModel``),
:mod:`.model_io` (a model's adapters to and from the checkpoint format of :mod:`tn_peft.io`), and around
them :mod:`.mixed` (mixed-adapter batches), :mod:`.frames` (data-aware circuit frames),
:mod:`.distributed` (FSDP2) and :mod:`.trainer` (transformers' Trainer).

``tn_peft.model`` was once the module that is now :mod:`tn_peft.model.model`; its names
(``get_model``, ``TnPeftModel``, ...) are still read from here, on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_SUBMODULES = frozenset(p.stem for p in Path(__file__).parent.glob("*.py")) - {"__init__"}


def __getattr__(name: str) -> Any:
    """A submodule (``tn_peft.model.layers``), or a name of :mod:`tn_peft.model.model`."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module(f"{__name__}.model"), name)
