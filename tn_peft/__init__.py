"""tn_peft: tensor-network adapters for parameter-efficient fine-tuning.

``load_graph`` -> :class:`Network` (structure) -> ``network.build(in, out)`` -> :class:`Adapter`
(an ``nn.Module`` whose ``delta_weight()`` is dW). Model integration, conversion and the CLI build
on these.

``get_peft_model(model, tn_peft.TnPeftConfig(graph=..., target_modules=...))`` is the peft front door
(:mod:`tn_peft.peft_method`); ``import tn_peft`` registers the method with peft whenever peft is imported.

The names below are imported on first use (PEP 562), so ``import tn_peft`` and the command line's
``--help`` do not pay for torch: ``from tn_peft import get_model`` imports the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CheckpointError,
    MissingDependencyError,
    RightInverseError,
    ShapeError,
    SpecError,
    TnPeftError,
)

__version__ = "0.1.0"

#: public name -> the module that defines it (imported when the name is first read)
_LAZY = {
    "Adapter": "tn_peft.adapters",
    "AdapterConfig": "tn_peft.config",
    "TnPeftModel": "tn_peft.model",
    "from_pretrained": "tn_peft.model",
    "get_model": "tn_peft.model",
    "Network": "tn_peft.network",
    "TnPeftConfig": "tn_peft.peft_method",
    "catalog": "tn_peft.spec",
    "load_graph": "tn_peft.spec",
}

# tn_peft is a peft method too (``get_peft_model(model, TnPeftConfig(...))``): registered with peft as soon
# as peft is imported, before or after this line, without importing it here (tn_peft.peft_hook)
from .peft_hook import install as _install_peft_hook

_install_peft_hook()

if TYPE_CHECKING:  # pragma: no cover
    from .adapters import Adapter
    from .config import AdapterConfig
    from .model import TnPeftModel, from_pretrained, get_model
    from .network import Network
    from .peft_method import TnPeftConfig
    from .spec import catalog, load_graph


def __getattr__(name: str) -> Any:
    """The public names of :data:`_LAZY`, and submodules (``tn_peft.layers``), imported on first use."""
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


__all__ = ["Adapter", "AdapterConfig", "CheckpointError", "MissingDependencyError", "Network", "RightInverseError",
           "ShapeError", "SpecError", "TnPeftConfig", "TnPeftError", "TnPeftModel", "__version__", "catalog", "from_pretrained",
           "get_model", "load_graph"]
