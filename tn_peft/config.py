"""``AdapterConfig``: what to adapt and with which graph, in the shape Hugging Face PEFT users know.

>>> config = AdapterConfig(graph="lora", graph_args={"rank": 8}, target_modules=["query", "value"])
>>> config.network().params["rank"]
8
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import SpecError, warn
from .patterns import check_pattern

#: ``target_modules="all-linear"``: every linear layer except the output head (as in PEFT).
ALL_LINEAR = "all-linear"


def pattern_key(patterns: Iterable[str], module_name: str) -> str | None:
    """The first key of ``patterns`` (PEFT's ``rank_pattern`` / ``alpha_pattern``, tn_peft's
    ``layer_graph_args``) that applies to ``module_name``, or None. PEFT's ``get_pattern_key`` rule: a key
    matches when ``re.match(rf"(.*\\.)?({key})$", module_name)`` does -- the whole name, a dotted suffix,
    or a regex over one; the first matching key in order wins.

    >>> pattern_key({"value": 2}, "encoder.layer.0.attention.self.value")
    'value'
    """
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module_name):
            return key
    return None


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
            if not isinstance(module, str) or not module:
                raise SpecError(f"modules_to_save entry {module!r} must be a non-empty module name",
                                fix="pass e.g. modules_to_save=['classifier']")
            check_pattern("modules_to_save", module, rf"(^|.*\.){module}($|\..*)")
        if self.target_modules is None:
            raise SpecError("AdapterConfig needs target_modules",
                            fix="pass e.g. target_modules=['query', 'value'], a regex, or 'all-linear'")
        for name in ("target_modules", "exclude_modules"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, list)):
                raise SpecError(f"{name} must be a string (regex), a list of names or None, got {type(value).__name__}",
                                fix=f"pass {name}=['query', 'value'] or a regex string")
            if isinstance(value, str) and not (name == "target_modules" and value.lower() == ALL_LINEAR):
                check_pattern(name, value)
        try:
            dropout = float(self.dropout)
        except (TypeError, ValueError):
            raise SpecError(f"dropout must be a number in [0, 1), got {self.dropout!r}",
                            fix="pass e.g. dropout=0.05") from None
        if not 0.0 <= dropout < 1.0:
            raise SpecError(f"dropout must be in [0, 1), got {self.dropout}", fix="pass e.g. dropout=0.05")
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
            check_pattern("layer_graph_args key", key, rf"(.*\.)?({key})$")
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
            check_pattern("layers_pattern", item, rf"(?:^|.*?\.){item}\.(?P<idx>\d+)\.")
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
        """The :class:`~tn_peft.network.Network` this config describes (graph_args and alpha applied)."""
        return self._network(self.graph_args)

    def _network(self, args: Mapping[str, Any], layer_key: str | None = None):
        from .spec import load_graph

        net = load_graph(self.graph, **args)
        if self.alpha is not None and not (layer_key is not None and "alpha" in self.layer_graph_args[layer_key]):
            if "alpha" not in net.params:
                raise SpecError(
                    f"AdapterConfig.alpha={self.alpha} was given but graph {net.name!r} has no 'alpha' parameter",
                    source=net.source, fix=f"drop alpha, or use graph_args for its parameters "
                                          f"({', '.join(sorted(net.params)) or 'none'})")
            net = net.with_params(alpha=self.alpha)
        return net

    def layer_graph_key(self, module_name: str) -> str | None:
        """The ``layer_graph_args`` key that applies to ``module_name``, or None (PEFT's rule:
        :func:`pattern_key`).

        >>> AdapterConfig(target_modules=["query"], layer_graph_args={"query": {"rank": 2}}).layer_graph_key(
        ...     "encoder.layer.0.attention.self.query")
        'query'
        """
        return pattern_key(self.layer_graph_args, module_name)

    def check_layer_graph_args(self, network=None) -> None:
        """SpecError naming the key for an override of a parameter the graph does not have."""
        params = (network if network is not None else self.network()).params
        for key, args in self.layer_graph_args.items():
            unknown = [name for name in args if name not in params]
            if unknown:
                raise SpecError(f"layer_graph_args[{key!r}]: graph has no parameter {unknown[0]!r}",
                                fix=f"parameters are: {', '.join(sorted(params)) or '(none)'}")

    def layer_networks(self, network, names: list[str], layer_specs: Mapping[str, Any] | None = None) -> dict:
        """Module name -> its network, for the adapted modules ``names``: a ``layer_specs`` entry (a
        checkpoint's per-layer graph) first, else :meth:`layer_network` (``network`` itself when nothing
        overrides it; one network per ``layer_graph_args`` key, however many layers it matches). Warns,
        as PEFT does for rank_pattern keys, about ``layer_graph_args`` keys that match no module."""

        from .spec import network_from_spec

        layer_specs = layer_specs or {}
        networks, by_key = {}, {}
        base_spec = None
        for name in names:
            if name in layer_specs:
                networks[name] = network_from_spec(layer_specs[name], source=f"targets[{name!r}].graph")
                continue
            key = self.layer_graph_key(name)
            if key not in by_key:
                net = self.layer_network(name, network)
                if net is not network:
                    base_spec = base_spec or network.to_spec()
                    net = network if net.to_spec() == base_spec else net
                by_key[key] = net
            networks[name] = by_key[key]
        matched = set(by_key) | {self.layer_graph_key(name) for name in layer_specs if name in names}
        unmatched = sorted(set(self.layer_graph_args) - matched)
        if unmatched:
            warn(f"The following layer_graph_args keys did not match any targeted module and were "
                 f"ignored: {unmatched}.", RuntimeWarning)
        return networks

    def layer_network(self, module_name: str, network=None):
        """The network of layer ``module_name``: ``graph_args`` with its ``layer_graph_args`` override merged
        over them (an override's ``alpha`` also beats :attr:`alpha`); ``network`` (default :meth:`network`)
        when no key matches."""
        key = self.layer_graph_key(module_name)
        if key is None:
            return network if network is not None else self.network()
        try:
            return self._network({**self.graph_args, **self.layer_graph_args[key]}, layer_key=key)
        except SpecError as exc:
            raise SpecError(f"layer_graph_args[{key!r}] (module {module_name!r}): {exc.bare_message}",
                            source=exc.source, fix=exc.fix) from None

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
    def from_pretrained(cls, directory) -> AdapterConfig:
        """The config saved in an adapter folder's ``adapter_config.json`` (its graph is the embedded spec)."""
        from .checkpoint import read_adapter_config

        return cls.from_dict(read_adapter_config(directory))

    def help(self) -> dict[str, str]:
        """Field name -> its help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(self)}
