"""``AdapterConfig``: what to adapt and with which graph, in the shape Hugging Face PEFT users know.

>>> config = AdapterConfig(graph="lora", graph_args={"rank": 8}, target_modules=["query", "value"])
>>> config.network().params["rank"]
8
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import SpecError

#: ``target_modules="all-linear"``: every linear layer except the output head (as in PEFT).
ALL_LINEAR = "all-linear"


@dataclass
class AdapterConfig:
    """Configuration of one named adapter (see :func:`tn_peft.get_model`).

    Target matching follows PEFT exactly: a string is a regular expression that must match the
    whole module name (``re.fullmatch``); a list matches a name exactly or as a dotted suffix
    (``"query"`` matches ``encoder.layer.0.attention.self.query``); ``"all-linear"`` takes every
    ``nn.Linear`` / GPT-2 ``Conv1D`` but the output head.
    """

    graph: Any = field(default="lora", metadata={
        "help": "The adapter's tensor network: a catalog name (e.g. 'lora', 'quantum_peft', 'lotr'), a path "
                "to a YAML/JSON graph file, an inline spec mapping or JSON string, or a Network."})
    graph_args: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Overrides of the graph's parameters, e.g. {'rank': 4, 'layers': 1}."})
    target_modules: Any = field(default=None, metadata={
        "help": "Modules to adapt: a regex matched against the whole module name, a list of names matched "
                "exactly or as dotted suffixes, or 'all-linear' (every linear layer but the output head)."})
    exclude_modules: Any = field(default=None, metadata={
        "help": "Modules never to adapt, with the same matching rules as target_modules (regex or list)."})
    modules_to_save: list[str] | None = field(default=None, metadata={
        "help": "Modules (names or dotted suffixes, e.g. ['classifier']) trained in full and saved with the "
                "adapter; each adapter gets its own copy, the original stays frozen."})
    alpha: float | None = field(default=None, metadata={
        "help": "When given, overrides the graph's 'alpha' parameter (the scale is alpha / rank for the "
                "catalog graphs). An error if the graph has no 'alpha' parameter."})
    dropout: float = field(default=0.0, metadata={
        "help": "Dropout probability on the adapter's input path (as LoRA's lora_dropout): "
                "y = base(x) + adapter(dropout(x))."})
    base_model_name_or_path: str | None = field(default=None, metadata={
        "help": "The base model's name or path; filled in from model.config when the model has one."})
    inference_mode: bool = field(default=False, metadata={
        "help": "True when the adapter was loaded for inference (is_trainable=False): its parameters are frozen."})

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, (set, tuple)):
            self.target_modules = sorted(self.target_modules)
        if isinstance(self.exclude_modules, (set, tuple)):
            self.exclude_modules = sorted(self.exclude_modules)
        if isinstance(self.modules_to_save, str):
            self.modules_to_save = [self.modules_to_save]
        elif self.modules_to_save is not None:
            self.modules_to_save = list(self.modules_to_save)
        if self.target_modules is None:
            raise SpecError("AdapterConfig needs target_modules",
                            fix="pass e.g. target_modules=['query', 'value'], a regex, or 'all-linear'")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, list)):
                raise SpecError(f"{name} must be a string (regex), a list of names or None, got {type(value).__name__}",
                                fix=f"pass {name}=['query', 'value'] or a regex string")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise SpecError(f"dropout must be in [0, 1), got {self.dropout}", fix="pass e.g. dropout=0.05")
        self.graph_args = dict(self.graph_args or {})

    # ------------------------------------------------------------- network
    def network(self):
        """The :class:`~tn_peft.network.Network` this config describes (graph_args and alpha applied)."""
        from .spec import load_graph

        net = load_graph(self.graph, **self.graph_args)
        if self.alpha is not None:
            if "alpha" not in net.params:
                raise SpecError(
                    f"AdapterConfig.alpha={self.alpha} was given but graph {net.name!r} has no 'alpha' parameter",
                    source=net.source, fix=f"drop alpha, or use graph_args for its parameters "
                                          f"({', '.join(sorted(net.params)) or 'none'})")
            net = net.with_params(alpha=self.alpha)
        return net

    # ------------------------------------------------------------- dict I/O
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (a Network graph becomes its spec)."""
        from .network import Network

        data = asdict(self) if not isinstance(self.graph, Network) else {
            f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "graph"}
        if isinstance(self.graph, Network):
            data["graph"] = self.graph.to_spec()
        elif isinstance(self.graph, Mapping):
            data["graph"] = json.loads(json.dumps(dict(self.graph), default=str))
        else:
            data["graph"] = str(self.graph)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterConfig:
        """Rebuild a config from :meth:`to_dict` output (unknown keys, e.g. ``peft_type``, are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: copy.deepcopy(v) for k, v in data.items() if k in names})

    @classmethod
    def from_pretrained(cls, directory) -> "AdapterConfig":
        """The config saved in an adapter folder's ``adapter_config.json`` (its graph is the embedded spec)."""
        from .checkpoint import read_adapter_config

        return cls.from_dict(read_adapter_config(directory))

    def help(self) -> dict[str, str]:
        """Field name -> its help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(self)}
