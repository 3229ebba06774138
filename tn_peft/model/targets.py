"""Which modules an :class:`~tn_peft.model.config.AdapterConfig` adapts, and with what: PEFT's matching rules,
and :func:`resolve_config`, the one pure step from (config, model) to module name -> layer type -> network.

Model integration runs spec -> Network -> Adapter -> plan -> program -> layer:
``config.network()`` loads the graph (:mod:`tn_peft.graph.spec` -> :class:`~tn_peft.graph.network.Network`);
:func:`resolve_config` matches it against the model once, giving every adapted module its
:data:`~tn_peft.model.layers.LAYER_TYPES` row, the shape of its dW and its network (``layer_graph_args`` or a
checkpoint's per-layer graph); :class:`~tn_peft.model.model.TnPeftModel` then builds each network into an
:class:`~tn_peft.adapter.adapter.Adapter` for that shape, whose planner (:mod:`tn_peft.planner`) turns each
token count into a contraction program, and wraps the module in the row's layer class
(:mod:`tn_peft.model.layers`), which runs the program in its forward.

Matching (PEFT's ``check_target_module_exists``; the name rules themselves are :mod:`tn_peft.model.module_names`):

- ``target_modules``: a regex string over the whole name, or a list of names or dotted suffixes;
- ``"all-linear"`` takes every ``nn.Linear`` and GPT-2 ``Conv1D`` except the output head;
- ``exclude_modules`` (same rules) and modules in, or inside, ``modules_to_save`` are never adapted;
- ``layers_to_transform`` keeps only modules whose layer index (:func:`~tn_peft.model.module_names.layer_index`)
  is listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import SpecError, warn
from ..io.checkpoint import shape_key
from .config import ALL_LINEAR
from .layers import LayerType, ModulesToSave, TnLayer, find_layer_type, layer_type
from .module_names import in_saved_module, layer_index, match_name

if TYPE_CHECKING:  # pragma: no cover
    from .config import AdapterConfig
    from ..graph.network import Network

#: Head module names PEFT excludes from ``all-linear`` for classification models.
CLASSIFIER_HEAD_NAMES = ("score", "classifier")


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
                 layers_pattern: str | list[str] | None = None) -> dict[str, LayerType]:
    """Module names of ``model`` to adapt, in ``named_modules`` order, each with its layer type (computed
    here, once per module: :func:`resolve_config` takes it from this result).

    With ``layers_to_transform`` (PEFT's semantics, an empty list meaning "all"), only modules whose
    :func:`layer_index` is listed (or equals the int) are kept.

    Raises SpecError when nothing matches (listing some module names), when ``layers_to_transform`` is
    given and a matched module's name holds no layer index (PEFT skips such modules silently; tn_peft
    names them), and, through :func:`tn_peft.model.layers.layer_type`, when a matched module is not a layer tn_peft
    can adapt.
    """
    all_linear = isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR
    heads = output_head_names(model) if all_linear else set()
    inner: set[str] = set()  # modules inside our own wrappers are never targets
    for name, module in model.named_modules():
        if isinstance(module, (TnLayer, ModulesToSave)):
            inner.update(f"{name}.{sub}" for sub, _ in module.named_modules() if sub)
    found: dict[str, LayerType] = {}
    for name, module in model.named_modules():
        if not name or name in inner:
            continue
        if match_name(name, exclude_modules) or in_saved_module(name, modules_to_save):
            continue
        if all_linear:
            row = find_layer_type(module)
            if row is not None and row.all_linear and name not in heads:
                found[name] = row
        elif match_name(name, target_modules):
            found[name] = layer_type(module, name)
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
        found = {name: row for name, row in found.items() if indexes[name] in wanted}
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


@dataclass(frozen=True)
class Target:
    """One module a config adapts, resolved: its :data:`~tn_peft.model.layers.LAYER_TYPES` row, the shape of its
    dW and its network (``own_graph``: not the config's, from ``layer_graph_args`` or a checkpoint)."""

    module: nn.Module
    layer_type: LayerType
    out_features: int
    in_features: int
    network: Network
    own_graph: bool

    @property
    def shape_key(self) -> str:
        """``"<out>x<in>"``: the key of the shared nodes of this shape (LoTR's U and V)."""
        return shape_key(self.out_features, self.in_features)

    def checkpoint_entry(self) -> dict[str, Any]:
        """What ``adapter_config.json`` records under ``targets`` for this module: type, shape, and the
        layer's own graph when it has one."""
        entry: dict[str, Any] = {"type": self.layer_type.name, "shape": [self.out_features, self.in_features]}
        if self.own_graph:
            entry["graph"] = self.network.to_spec()
        return entry


@dataclass(frozen=True)
class ResolvedConfig:
    """A config resolved against a model (:func:`resolve_config`): its network, and module name -> :class:`Target`
    for every adapted module, in model order."""

    network: Network
    targets: dict[str, Target]


class ConfigNetworks:
    """The networks of one config, made once each: the graph is read once, and each distinct parameter
    set (``graph_args``, one ``layer_graph_args`` entry merged over them, ``alpha`` merged before the
    expansion) is expanded once; a network whose parameters come out the same is the same object."""

    def __init__(self, config: AdapterConfig) -> None:
        from ..graph.network import Network
        from ..graph.spec import graph_template

        self.config = config
        self._given = config.graph if isinstance(config.graph, Network) else None
        self._template = None if self._given is not None else graph_template(config.graph)
        self.param_names = list(self._given.params) if self._given is not None else self._template.param_names
        self._expanded: dict[str, Network] = {}

    def network(self, layer_key: str | None = None) -> Network:
        """The network of the config (``layer_key`` None), or of the layers ``layer_graph_args[layer_key]``
        applies to: ``graph_args`` with the key's arguments merged over them (its ``alpha`` beats
        :attr:`~tn_peft.model.config.AdapterConfig.alpha`)."""
        config = self.config
        layer_args = config.layer_graph_args[layer_key] if layer_key is not None else {}
        args = {**config.graph_args, **layer_args}
        if config.alpha is not None and "alpha" not in layer_args:
            if "alpha" not in self.param_names:
                raise SpecError(f"AdapterConfig.alpha={config.alpha} was given but graph "
                                f"{self._graph_name()!r} has no 'alpha' parameter", source=self._source(),
                                fix=f"drop alpha, or use graph_args for its parameters "
                                    f"({', '.join(sorted(self.param_names)) or 'none'})")
            args["alpha"] = config.alpha
        key = repr(sorted(args.items(), key=lambda item: item[0]))
        if key not in self._expanded:
            try:
                self._expanded[key] = (self._given.with_params(**args) if self._given is not None and args
                                       else self._given if self._given is not None else self._template.expand(args))
            except SpecError as exc:
                if layer_key is None:
                    raise
                raise SpecError(f"layer_graph_args[{layer_key!r}]: {exc.bare_message}", source=exc.source,
                                fix=exc.fix) from None
        return self._expanded[key]

    def check_layer_graph_args(self) -> None:
        """SpecError naming the key for an override of a parameter the graph does not have."""
        for key, args in self.config.layer_graph_args.items():
            unknown = [name for name in args if name not in self.param_names]
            if unknown:
                raise SpecError(f"layer_graph_args[{key!r}]: graph has no parameter {unknown[0]!r}",
                                fix=f"parameters are: {', '.join(sorted(self.param_names)) or '(none)'}")

    def layer_networks(self, names: Iterable[str], layer_specs: dict[str, Any] | None = None) -> dict[str, Network]:
        """Module name -> its network, for the adapted modules ``names``: a ``layer_specs`` entry (a
        checkpoint's per-layer graph) first, else :meth:`network` of the module's ``layer_graph_args`` key
        (the config's network itself where none applies, or where the override changes nothing). Warns,
        as PEFT does for rank_pattern keys, about ``layer_graph_args`` keys that match no module."""
        from ..graph.spec import network_from_spec

        config, layer_specs = self.config, layer_specs or {}
        base = self.network()
        networks, matched = {}, set()
        for name in names:
            key = config.layer_graph_key(name)
            matched.add(key)
            if name in layer_specs:
                networks[name] = network_from_spec(layer_specs[name], source=f"targets[{name!r}].graph")
            elif key is None:
                networks[name] = base
            else:
                net = self.network(key)
                networks[name] = base if net is not base and net.to_spec() == base.to_spec() else net
        unmatched = sorted(set(config.layer_graph_args) - matched)
        if unmatched:
            warn(f"The following layer_graph_args keys did not match any targeted module and were "
                 f"ignored: {unmatched}.", RuntimeWarning)
        return networks

    def _graph_name(self) -> str:
        return self._given.name if self._given is not None else str(self._template.spec.get("name", self.config.graph))

    def _source(self) -> str | None:
        return self._given.source if self._given is not None else self._template.source


def resolve_config(config: AdapterConfig, model: nn.Module, *, targets: Iterable[str] | None = None,
                   layer_specs: dict[str, Any] | None = None) -> ResolvedConfig:
    """Resolve ``config`` against ``model`` once, the one step from a config to layers: which modules it
    adapts (:func:`find_targets`, or the exact names ``targets``), each one's layer type and dW shape
    (:func:`tn_peft.model.layers.layer_type`, computed once per module) and network
    (:meth:`ConfigNetworks.layer_networks`: each distinct parameter set expanded and validated once;
    ``layer_specs``, module name -> graph spec as a checkpoint saves it, forces some). Changes neither;
    SpecError for a config that does not fit the model.
    """
    networks_of = ConfigNetworks(config)
    network = networks_of.network()
    networks_of.check_layer_graph_args()
    named = dict(model.named_modules())
    if targets is None:
        rows = find_targets(model, config.target_modules, config.exclude_modules, config.modules_to_save,
                            layers_to_transform=config.layers_to_transform, layers_pattern=config.layers_pattern)
    else:
        missing = [name for name in targets if name not in named]
        if missing:
            raise SpecError(f"the model has no module {missing[0]!r}" + (f" (nor {missing[1:]})" if missing[1:] else ""),
                            fix="name modules as model.named_modules() does, e.g. encoder.layer.0.attention.self.query")
        rows = {name: layer_type(named[name], name) for name in targets}
    networks = networks_of.layer_networks(list(rows), layer_specs)
    resolved = {}
    for name, row in rows.items():
        module = named[name]
        out_features, in_features = row.shape(module)
        resolved[name] = Target(module, row, out_features, in_features, networks[name], networks[name] is not network)
    if any(spec.shared for spec in network.nodes):
        _check_shared_overrides(network, resolved)
    return ResolvedConfig(network, resolved)


def _shared_signature(network: Network, out_features: int, in_features: int) -> dict[str, tuple]:
    """What a layer of this shape needs of each shared node: kind, legs, options, sizes."""
    sizes = network.resolve(in_features, out_features)
    return {spec.name: (spec.kind, tuple(spec.legs), spec.options, tuple(sizes[leg] for leg in spec.legs))
            for spec in network.nodes if spec.shared}


def _check_shared_overrides(network: Network, targets: dict[str, Target]) -> None:
    """Layers with their own graph (layer_graph_args) may use the shared nodes of their shape only if
    those come out the same (e.g. LoTR with a per-layer alpha, not a per-layer rank)."""
    for name, target in targets.items():
        if not target.own_graph:
            continue
        shape = target.out_features, target.in_features
        want, have = _shared_signature(target.network, *shape), _shared_signature(network, *shape)
        odd = next((node for node in sorted(set(want) | set(have)) if want.get(node) != have.get(node)), None)
        if odd is not None:
            raise SpecError(f"layer_graph_args changes node {odd!r} of {name!r}, but graph {network.name!r} shares "
                            f"it between layers of a shape ({have.get(odd, ('absent',))[-1]} for every layer, "
                            f"{want.get(odd, ('absent',))[-1]} here)",
                            fix="override only what leaves the shared nodes alone (e.g. alpha), or use a graph "
                                "without shared nodes")
