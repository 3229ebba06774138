"""tn_peft: tensor-network adapters for parameter-efficient fine-tuning.

``load_graph`` -> :class:`Network` (structure) -> ``network.build(in, out)`` -> :class:`Adapter`
(an ``nn.Module`` whose ``delta_weight()`` is dW). Model integration, conversion and the CLI build
on these.

``get_peft_model(model, tn_peft.TnPeftConfig(graph=..., target_modules=...))`` is the peft front door
(:mod:`tn_peft.model.peft_method`); ``import tn_peft`` registers the method with peft whenever peft is imported.

The names below are imported on first use (PEP 562), so ``import tn_peft`` and the command line's
``--help`` do not pay for torch: ``from tn_peft import get_model`` imports the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._moved import install as _install_moved
from .errors import (
    CheckpointError,
    DataError,
    MissingDependencyError,
    RightInverseError,
    ShapeError,
    SpecError,
    TnPeftError,
    UsageError,
)

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

_install_moved()  # old import paths (tn_peft.spec, tn_peft.config, ...) load the moved modules, warning once

#: public name -> the module that defines it (imported when the name is first read)
_LAZY = {
    "Adapter": "tn_peft.adapter.adapter",
    "AdapterConfig": "tn_peft.model.config",
    "TnPeftModel": "tn_peft.model",
    "from_pretrained": "tn_peft.model",
    "get_model": "tn_peft.model",
    "Network": "tn_peft.graph.network",
    "TnPeftConfig": "tn_peft.model.peft_method",
    "catalog": "tn_peft.graph.spec",
    "load_graph": "tn_peft.graph.spec",
}

# tn_peft is a peft method too (``get_peft_model(model, TnPeftConfig(...))``): registered with peft as soon
# as peft is imported, before or after this line, without importing it here (tn_peft._peft_hook)
from ._peft_hook import install as _install_peft_hook

_install_peft_hook()

if TYPE_CHECKING:  # pragma: no cover
    from .adapter.adapter import Adapter
    from .model.config import AdapterConfig
    from .model.model import TnPeftModel, from_pretrained, get_model
    from .graph.network import Network
    from .graph.spec import catalog, load_graph
    from .model.peft_method import TnPeftConfig


def __getattr__(name: str) -> Any:
    """The public names of :data:`_LAZY`, and submodules (``tn_peft.model.layers``), imported on first use."""
    target = _LAZY.get(name)
    if target is not None:
        value = getattr(importlib.import_module(target), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Adapter", "AdapterConfig", "CheckpointError", "DataError", "MissingDependencyError", "Network",
           "RightInverseError", "ShapeError", "SpecError", "TnPeftConfig", "TnPeftError", "TnPeftModel", "UsageError",
           "__version__", "catalog", "from_pretrained", "get_model", "load_graph"]
