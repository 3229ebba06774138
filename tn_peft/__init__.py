"""tn_peft: tensor-network adapters for parameter-efficient fine-tuning.

``load_graph`` -> :class:`Network` (structure) -> ``network.build(in, out)`` -> :class:`Adapter`
(an ``nn.Module`` whose ``delta_weight()`` is dW). Model integration, conversion and the CLI build
on these.
"""

__version__ = "0.1.0"

from .adapters import Adapter  # noqa: E402
from .errors import CheckpointError, MissingDependencyError, ShapeError, SpecError, TnPeftError  # noqa: E402
from .network import Network  # noqa: E402
from .spec import catalog, load_graph  # noqa: E402
from .config import AdapterConfig  # noqa: E402
from .model import TnPeftModel, from_pretrained, get_model  # noqa: E402

__all__ = ["AdapterConfig", "TnPeftModel", "get_model", "from_pretrained", "Adapter", "Network", "load_graph", "catalog", "SpecError", "ShapeError", "CheckpointError",
           "MissingDependencyError", "TnPeftError", "__version__"]
