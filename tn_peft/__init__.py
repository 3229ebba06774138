"""tn_peft: tensor-network adapters for parameter-efficient fine-tuning.

``load_graph`` -> :class:`Network` (structure) -> ``network.build(in, out)`` -> :class:`Adapter`
(an ``nn.Module`` whose ``delta_weight()`` is dW). Model integration, conversion and the CLI build
on these.
"""

__version__ = "0.1.0"

from .adapters import Adapter
from .config import AdapterConfig
from .errors import (
           CheckpointError,
           MissingDependencyError,
           RightInverseError,
           ShapeError,
           SpecError,
           TnPeftError,
)
from .model import TnPeftModel, from_pretrained, get_model
from .network import Network
from .spec import catalog, load_graph

__all__ = ["Adapter", "AdapterConfig", "CheckpointError", "MissingDependencyError", "Network", "RightInverseError",
           "ShapeError",
           "SpecError", "TnPeftError", "TnPeftModel", "__version__", "catalog", "from_pretrained", "get_model",
           "load_graph"]
