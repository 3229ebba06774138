"""``AdapterConfig``: what to adapt and with which graph, in the shape Hugging Face PEFT users know.

The config is data: it checks its own fields (types and values, each error naming the field) and
nothing else. Turning it into networks for a model's layers is :func:`tn_peft.model.targets.resolve_config`.

>>> config = AdapterConfig(graph="lora", graph_args={"rank": 8}, target_modules=["query", "value"])
>>> config.network().params["rank"]
8
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from os import PathLike
from typing import Any

from ..errors import SpecError
from ..graph.network import Network
from .module_names import check_module_name, check_module_pattern, pattern_key

#: ``target_modules="all-linear"``: every linear layer except the output head (as in PEFT).
ALL_LINEAR = "all-linear"


def _is_number(value: Any) -> bool:
    """An int or a float, never a bool or a string (``"0.1"`` is a typo to report, not a value to convert)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class AdapterConfig:
    """Configuration of one named adapter (see :func:`tn_peft.get_model`).

    Target matching follows PEFT exactly: a string is a regular expression that must match the
    whole module name (``re.fullmatch``); a list matches a name exactly or as a dotted suffix
    (``"query"`` matches ``encoder.layer.0.attention.self.query``); ``"all-linear"`` takes every
    ``nn.Linear`` / GPT-2 ``Conv1D`` but the output head. ``layers_to_transform`` / ``layers_pattern``
    narrow the targets to some layer indices, and ``layer_graph_args`` gives matching layers their own graph
    arguments, both as in PEFT (``layers_to_transform``, ``rank_pattern`` / ``alpha_pattern``).
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
    layer_graph_args: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "Per-layer overrides of graph_args, like PEFT's rank_pattern / alpha_pattern: module-name "
                "pattern -> graph parameters merged over graph_args (and alpha) for the matching layers, e.g. "
                "{'encoder.layer.0.attention.self.query': {'rank': 2}}. A key matches a module as in PEFT's "
                "get_pattern_key: re.match(rf'(.*\\.)?({key})$', name), i.e. the whole name, a dotted suffix, "
                "or a regex over such a suffix; the first matching key (in dict order) wins. Unknown parameters "
                "are a SpecError naming the key; a key that matches no adapted module is a RuntimeWarning "
                "(as PEFT warns for rank_pattern)."})
    layers_to_transform: int | list[int] | None = field(default=None, metadata={
        "help": "Layer indices to adapt (PEFT's layers_to_transform): only targets whose layer index is listed "
                "(or equals the int) are adapted. The index is the number after layers_pattern "
                "('...<pattern>.<idx>.') or, without layers_pattern, the first '.<name>.<idx>.' in the module "
                "name (PEFT's default). Needs list target_modules (or 'all-linear'); a targeted module whose "
                "name holds no layer index is a SpecError."})
    layers_pattern: str | list[str] | None = field(default=None, metadata={
        "help": "Name(s) of the nn.ModuleList holding the layers, e.g. 'layer' (BERT), 'layers' (Llama), 'h' "
                "(GPT-2); used with layers_to_transform to find a module's layer index (PEFT's layers_pattern)."})
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
            if not isinstance(self.modules_to_save, Iterable):
                raise SpecError(f"modules_to_save must be a list of module names or None, got "
                                f"{type(self.modules_to_save).__name__}", fix="pass e.g. modules_to_save=['classifier']")
            self.modules_to_save = list(self.modules_to_save)
        for module in self.modules_to_save or ():
            check_module_name(module, "modules_to_save")
        if self.target_modules is None:
            raise SpecError("AdapterConfig needs target_modules",
                            fix="pass e.g. target_modules=['query', 'value'], a regex, or 'all-linear'")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, list)):
                raise SpecError(f"{name} must be a string (regex), a list of names or None, got {type(value).__name__}",
                                fix=f"pass {name}=['query', 'value'] or a regex string")
            if isinstance(value, str) and not (name == "target_modules" and value.lower() == ALL_LINEAR):
                check_module_pattern(value, "modules", name)
            for entry in value if isinstance(value, list) else ():
                check_module_name(entry, name)
        if not _is_number(self.dropout):
            raise SpecError(f"dropout must be a number in [0, 1), got {type(self.dropout).__name__} {self.dropout!r}",
                            fix="pass e.g. dropout=0.05 (a number, not a string)")
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"dropout must be in [0, 1), got {self.dropout}", fix="pass e.g. dropout=0.05")
        if self.alpha is not None and not _is_number(self.alpha):
            raise SpecError(f"alpha must be a number or None, got {type(self.alpha).__name__} {self.alpha!r}",
                            fix="pass e.g. alpha=16 (a number, not a string)")
        if not isinstance(self.inference_mode, bool):
            raise SpecError(f"inference_mode must be True or False, got {self.inference_mode!r}",
                            fix="pass inference_mode=True or False")
        if self.base_model_name_or_path is not None and not isinstance(self.base_model_name_or_path, str):
            raise SpecError(f"base_model_name_or_path must be a string or None, got {self.base_model_name_or_path!r}",
                            fix="pass the model's name or path as a string")
        if not isinstance(self.graph, (str, PathLike, Mapping, Network)):
            raise SpecError(f"graph must be a catalog name, a path, a spec mapping or a Network, got "
                            f"{type(self.graph).__name__}", fix="pass e.g. graph='lora'")
        try:
            self.graph_args = dict(self.graph_args or {})
        except (TypeError, ValueError):
            raise SpecError(f"graph_args must be a dict of graph parameters, got {self.graph_args!r}",
                            fix="pass e.g. graph_args={'rank': 8}") from None
        self._check_layer_fields()

    def _check_layer_fields(self) -> None:
        layer_args = self.layer_graph_args or {}
        if not isinstance(layer_args, Mapping):
            raise SpecError(f"layer_graph_args must map module patterns to graph_args dicts, got "
                            f"{type(layer_args).__name__}",
                            fix="pass e.g. layer_graph_args={'encoder.layer.0.attention.self.query': {'rank': 2}}")
        for key, args in layer_args.items():
            if not isinstance(key, str) or not key:
                raise SpecError(f"layer_graph_args key {key!r} must be a non-empty module-name pattern",
                                fix="use a module name, a dotted suffix ('query') or a regex")
            if not isinstance(args, Mapping):
                raise SpecError(f"layer_graph_args[{key!r}] must be a dict of graph parameters, got {args!r}",
                                fix=f"write layer_graph_args={{{key!r}: {{'rank': 2}}}}")
            check_module_pattern(key, "key", "layer_graph_args key")
        self.layer_graph_args = {key: dict(args) for key, args in layer_args.items()}
        layers = self.layers_to_transform
        if isinstance(layers, tuple):
            layers = list(layers)
        if layers is not None:
            items = layers if isinstance(layers, list) else [layers]
            if any(isinstance(i, bool) or not isinstance(i, int) for i in items):
                raise SpecError(f"layers_to_transform must be an int or a list of ints, got {layers!r}",
                                fix="pass e.g. layers_to_transform=[0, 1]")
        self.layers_to_transform = layers
        pattern = self.layers_pattern
        if isinstance(pattern, tuple):
            pattern = list(pattern)
        if pattern is not None and not (isinstance(pattern, str)
                                        or (isinstance(pattern, list) and all(isinstance(p, str) for p in pattern))):
            raise SpecError(f"layers_pattern must be a string or a list of strings, got {pattern!r}",
                            fix="pass e.g. layers_pattern='layer'")
        for item in [pattern] if isinstance(pattern, str) else pattern or ():
            check_module_pattern(item, "layers", "layers_pattern")
        self.layers_pattern = pattern
        if pattern and layers is None:  # as PEFT's LoraConfig
            raise SpecError("layers_pattern was given without layers_to_transform",
                            fix="pass layers_to_transform too, e.g. layers_to_transform=[0]")
        regex_targets = isinstance(self.target_modules, str) and self.target_modules.lower() != ALL_LINEAR
        if regex_targets and (layers is not None or pattern is not None):  # as PEFT's LoraConfig
            raise SpecError("layers_to_transform / layers_pattern cannot be used when target_modules is a regex "
                            f"string ({self.target_modules!r})",
                            fix="list the module names (e.g. ['query', 'value']) or put the layer index in the regex")

    # ------------------------------------------------------------- network
    def network(self):
        """The :class:`~tn_peft.graph.network.Network` this config describes (graph_args and alpha applied):
        a convenience over :class:`tn_peft.model.targets.ConfigNetworks`, where a config becomes networks."""
        from .targets import ConfigNetworks

        return ConfigNetworks(self).network()

    def layer_graph_key(self, module_name: str) -> str | None:
        """The ``layer_graph_args`` key that applies to ``module_name``, or None (PEFT's rule:
        :func:`~tn_peft.model.module_names.pattern_key`).

        >>> AdapterConfig(target_modules=["query"], layer_graph_args={"query": {"rank": 2}}).layer_graph_key(
        ...     "encoder.layer.0.attention.self.query")
        'query'
        """
        return pattern_key(self.layer_graph_args, module_name)

    # ------------------------------------------------------------- dict I/O
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (a Network graph becomes its spec)."""
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
    def from_pretrained(cls, directory) -> AdapterConfig:
        """The config saved in an adapter folder's ``adapter_config.json`` (its graph is the embedded spec)."""
        from ..io.checkpoint import read_adapter_config

        return cls.from_dict(read_adapter_config(directory))

    def help(self) -> dict[str, str]:
        """Field name -> its help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(self)}
