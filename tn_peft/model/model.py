"""Model integration: inject graph adapters into a PyTorch / Hugging Face model, the way PEFT does.

>>> from torch import nn
>>> base = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
>>> model = get_model(base, AdapterConfig(graph="lora", target_modules=["0"]))
>>> model.targeted_module_names
['0']

:class:`TnPeftModel` mirrors ``peft.PeftModel``: ``add_adapter`` / ``set_adapter`` /
``disable_adapter()``, ``merge_adapter`` / ``unmerge_adapter`` / ``merge_and_unload`` / ``unload``,
``save_pretrained`` / ``from_pretrained`` / ``load_adapter``, ``print_trainable_parameters``.
Several adapters can be active at once, as with PEFT's tuner layers (``set_adapter(["a", "b"])``:
each adapted layer gives ``base(x) + sum of the active adapters' outputs``).
The checkpoint format is documented in :mod:`tn_peft.io.checkpoint`; transformers' ``Trainer`` saves and
loads adapter files through :class:`tn_peft.model.trainer.TnPeftTrainer`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import checkpoint as ckpt
from . import model_io
from ..adapter.batching import evaluate_groups, group_nodes
from ..adapter.cache import NodeCache
from .config import AdapterConfig
from .distributed import barrier, is_main_process, is_sharded
from ..errors import SpecError, UsageError, spec_source, warn
from .frames import set_weight_frames
from .layers import ModulesToSave, TnLayer, adapter_dtype
from .module_names import match_name
from . import serving
from .targets import Target, resolve_config


def get_model(model: nn.Module, config: AdapterConfig, adapter_name: str = "default", *,
              batch_nodes: bool = True) -> TnPeftModel:
    """Wrap ``model``: freeze it and add adapter ``adapter_name`` described by ``config`` (PEFT's ``get_peft_model``).

    ``batch_nodes`` evaluates same-kind same-shape nodes of all layers together once per forward.
    """
    return TnPeftModel(model, config, adapter_name, batch_nodes=batch_nodes)


def from_pretrained(model: nn.Module, directory: str | Path, adapter_name: str = "default",
                    is_trainable: bool = False, **kwargs: Any) -> TnPeftModel:
    """Wrap ``model`` with a saved adapter (``TnPeftModel.from_pretrained``; PEFT's ``PeftModel.from_pretrained``)."""
    return TnPeftModel.from_pretrained(model, directory, adapter_name, is_trainable, **kwargs)


def _build_adapter(name: str, target: Target, shared_nodes: dict[str, nn.Module] | None) -> nn.Module:
    """The :class:`~tn_peft.adapter.adapter.Adapter` of module ``name``: its network built for its dW shape, on the
    layer's device, in its adapter dtype (:func:`~tn_peft.model.layers.adapter_dtype`), ``frame: weight`` nodes set."""
    module, out_features, in_features = target.module, target.out_features, target.in_features
    base = module.base_layer if isinstance(module, TnLayer) else module
    try:
        adapter = target.network.build(in_features, out_features, shared_nodes=shared_nodes,
                                       dtype=adapter_dtype(base), device=base.weight.device)
        set_weight_frames(adapter, module)
        return adapter
    except SpecError as err:
        raise SpecError(f"building the adapter for module {name!r} (out={out_features}, in={in_features}): "
                        f"{err.bare_message}", source=err.source, line=err.line, node=err.node, leg=err.leg,
                        fix=err.fix) from None


#: sets of adapter names whose node groups a model keeps (see TnPeftModel._layer_nodes)
_MAX_NODE_GROUPS = 16


def _sharded(groups: list[list[nn.Module]]) -> bool:
    """True when the nodes are FSDP2-sharded here (their block gathers them only around its own forward).
    Every node is looked at (a shared node, in the model's own FSDP unit, is gathered while a block's are
    not): a few dozen attribute checks per forward."""
    return any(is_sharded(param) for group in groups for node in group
               for param in itertools.islice(node.parameters(), 1))


class _SignedForward:
    """``model.forward``: runs the base model; ``inspect.signature`` shows the base model's forward
    signature (transformers' Trainer drops dataset columns the signature lacks)."""

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return TnPeftModel._forward
        if torch.compiler.is_compiling():  # dynamo needs no signature and cannot trace setting one
            return functools.partial(TnPeftModel._forward, obj)
        bound = functools.partial(TnPeftModel._forward, obj)
        signature = _SignedForward._signature(obj)
        if signature is not None:
            bound.__signature__ = signature
        return bound

    @staticmethod
    def _signature(obj: Any) -> inspect.Signature | None:
        """The base model's forward signature, computed once per (instance, base model) and cached on ``obj``."""
        base = obj.base_model
        cached = obj.__dict__.get("_forward_signature")
        if cached is not None and cached[0] is base:
            return cached[1]
        try:
            signature = inspect.signature(base.forward)
        except (TypeError, ValueError, AttributeError):  # builtins without signatures: keep (*args, **kwargs)
            signature = None
        obj.__dict__["_forward_signature"] = (base, signature)
        return signature


class TnPeftModel(nn.Module):
    """A model with tensor-network adapters in its layers; unknown attributes resolve on the base model."""

    def __init__(self, model: nn.Module, config: AdapterConfig, adapter_name: str = "default", *,
                 batch_nodes: bool = True, targets: Sequence[str] | None = None,
                 layer_specs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.base_model = model
        self.tn_shared = nn.ModuleDict()  # adapter -> "<out>x<in>" -> node name -> node (LoTR's shared nodes)
        self.peft_config: dict[str, AdapterConfig] = {}
        self.targets: dict[str, dict[str, dict[str, Any]]] = {}
        self.networks: dict[str, Any] = {}
        self._active_adapters: list[str] = [adapter_name]
        self.batch_nodes = batch_nodes
        self._disabled = False
        self._frozen: set[int] = set()  # parameters a node kind keeps frozen on purpose
        # adapter names -> (per layer: (layer, [(name, node modules)]), node groups): what one forward evaluates
        self._node_groups: dict[tuple[str, ...], tuple[list, list]] = {}
        # inference: node tensors computed once (tn_peft.model.serving), and adapter banks (tn_peft.model.bank)
        self._serve_cache = NodeCache()
        self._serve_index: dict[str, Any] = {}
        self.tn_banks = nn.ModuleDict()
        self._bank_of: dict[str, nn.Module] = {}
        for param in model.parameters():
            param.requires_grad_(False)
        self.add_adapter(adapter_name, config, targets=targets, layer_specs=layer_specs)
        self.set_adapter(adapter_name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "forward" and isinstance(value, types.MethodType) and value.__self__ is self:
            # A library patching this model's forward (TRL's fused LM head, add_fused_lm_head) means the Hugging
            # Face model's: it reads `self.base_model` as transformers' backbone. The patch goes onto the wrapped
            # model, which runs inside this forward (node cache, adapter_names); see _forward for its way back.
            self.base_model.forward = types.MethodType(value.__func__, self.base_model)
            return
        super().__setattr__(name, value)

    def __getstate__(self) -> dict[str, Any]:
        # the inference cache is keyed by layer identity: a copy (deepcopy, pickle) starts with an empty one
        state = dict(super().__getstate__())
        state["_serve_cache"] = NodeCache(self._serve_cache.max_adapters)
        state["_serve_index"] = {}
        return state

    def train(self, mode: bool = True) -> TnPeftModel:
        # training mode: parameters are about to change, possibly without moving their version counters
        if mode and "_serve_cache" in self.__dict__:
            self._serve_cache.drop()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        # .to() / .half() / .cuda() replace the node tensors' storage: drop every cached adapter
        if "_serve_cache" in self.__dict__:
            self._serve_cache.drop()
        return super()._apply(fn, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    # ------------------------------------------------------------ modules
    def tn_layers(self) -> Iterator[tuple[str, TnLayer]]:
        """``(module name, layer)`` for every wrapped layer."""
        for name, module in self.base_model.named_modules():
            if isinstance(module, TnLayer):
                yield name, module

    def _saved_wrappers(self) -> Iterator[tuple[str, ModulesToSave]]:
        for name, module in self.base_model.named_modules():
            if isinstance(module, ModulesToSave):
                yield name, module

    def _replace(self, name: str, new: nn.Module) -> None:
        parent_name, _, child = name.rpartition(".")
        parent = self.base_model.get_submodule(parent_name) if parent_name else self.base_model
        setattr(parent, child, new)

    def get_base_model(self) -> nn.Module:
        """The wrapped model (with adapter layers in it)."""
        return self.base_model

    @property
    def active_adapters(self) -> list[str]:
        """The active adapters' names, in the order given to :meth:`set_adapter` (PEFT's ``active_adapters``)."""
        return list(self._active_adapters)

    @property
    def active_adapter(self) -> str:
        """The active adapter's name; with several active, the first one (as ``PeftModel.active_adapter`` and
        transformers' ``active_adapters()[0]``, so ``model.peft_config[model.active_adapter]`` keeps working).
        Use :attr:`active_adapters` for all of them."""
        return self._active_adapters[0]

    @property
    def targeted_module_names(self) -> list[str]:
        """Names of the adapted modules, over all adapters, in model order."""
        names = {n for targets in self.targets.values() for n in targets}
        return [n for n, _ in self.tn_layers() if n in names]

    # ----------------------------------------------------------- adapters
    def add_adapter(self, adapter_name: str, config: AdapterConfig, *, targets: Sequence[str] | None = None,
                    layer_specs: dict[str, Any] | None = None) -> None:
        """Inject a new adapter (not made active: call :meth:`set_adapter`). ``targets`` forces exact module names;
        ``layer_specs`` (module name -> graph spec, as saved in ``targets`` of adapter_config.json) forces the
        network of some layers.

        :func:`tn_peft.model.targets.resolve_config` gives each adapted module its layer type and network
        (``config.layer_network(name)``: ``graph_args`` with the layer's ``layer_graph_args`` override merged
        over them, PEFT's rank_pattern / alpha_pattern); each network is built for its layer's shape and the
        module is wrapped in its layer type's class."""
        if adapter_name in self.peft_config or adapter_name in self._bank_of:
            raise UsageError(f"an adapter named {adapter_name!r} already exists", fix="choose another adapter_name")
        if not adapter_name or "." in adapter_name:
            raise UsageError(f"adapter name {adapter_name!r} must be non-empty and contain no '.'",
                            fix="use e.g. 'default' or 'task_a'")
        resolved = resolve_config(config, self.base_model, targets=targets, layer_specs=layer_specs)
        network = resolved.network
        shared_specs = [spec for spec in network.nodes if spec.shared]
        shared: dict[str, dict[str, nn.Module]] = {}
        built = {}
        # Build everything before touching the model, so an error leaves it unchanged.
        for name, target in resolved.targets.items():
            module, shape_key = target.module, target.shape_key
            if shared_specs and shape_key not in shared:
                shared[shape_key] = network.shared_nodes(target.in_features, target.out_features,
                                                         device=module.weight.device, dtype=adapter_dtype(module))
            built[name] = _build_adapter(name, target, shared.get(shape_key))
        wrappers = self._find_modules_to_save(config, adapter_name)
        for name, target in resolved.targets.items():
            adapter, module = built[name], target.module
            self._frozen.update(id(p) for p in adapter.parameters() if not p.requires_grad)
            layer = module if isinstance(module, TnLayer) else self._layer_class(target.layer_type.layer_class)(module)
            if layer is not module:
                layer.active_adapters = list(self._active_adapters)
                self._replace(name, layer)
            layer.update_layer(adapter_name, adapter, dropout=float(config.dropout))
        if shared:
            self.tn_shared[adapter_name] = nn.ModuleDict({k: nn.ModuleDict(v) for k, v in shared.items()})
            self._frozen.update(id(p) for nodes in shared.values() for node in nodes.values()
                                for p in node.parameters() if not p.requires_grad)
        for name, module in wrappers:
            wrapper = module if isinstance(module, ModulesToSave) else ModulesToSave(module)
            if wrapper is not module:
                wrapper.active_adapter = adapter_name if adapter_name in self._active_adapters else None
                self._replace(name, wrapper)
            wrapper.add(adapter_name)
        if config.base_model_name_or_path is None:
            model_config = getattr(self.base_model, "config", None)
            config.base_model_name_or_path = getattr(model_config, "_name_or_path", None) or None
        self.peft_config[adapter_name] = config
        self.targets[adapter_name] = {name: target.checkpoint_entry() for name, target in resolved.targets.items()}
        self.networks[adapter_name] = network
        self._node_groups = {}
        self._serve_forget([adapter_name], structure=True)
        self._mark_trainable()

    @staticmethod
    def _layer_class(layer_class: type[TnLayer]) -> type[TnLayer]:
        """The class that wraps a module of layer type ``layer_class`` (the peft front door,
        :mod:`tn_peft.model.peft_method`, gives peft's ``BaseTunerLayer`` flavour of it)."""
        return layer_class

    def _find_modules_to_save(self, config: AdapterConfig, adapter_name: str) -> list[tuple[str, nn.Module]]:
        if not config.modules_to_save:
            return []
        found: list[tuple[str, nn.Module]] = []
        for name, module in self.base_model.named_modules():
            if not name or any(name.startswith(f"{taken}.") for taken, _ in found):
                continue
            if match_name(name, config.modules_to_save) and not isinstance(module, TnLayer):
                found.append((name, module))
        if not found:
            raise SpecError(f"modules_to_save={config.modules_to_save!r} matched no module",
                            fix="list module names or their last dotted parts, e.g. ['classifier']")
        return found

    def set_adapter(self, adapter_name: str | Sequence[str], inference_mode: bool | None = None) -> None:
        """Make ``adapter_name`` -- one name or a list of names -- the active adapter(s); unmerges first if merged.

        As PEFT's tuner layers (``BaseTuner.set_adapter`` / ``BaseTunerLayer.set_adapter``): every adapted
        layer adds the outputs of all active adapters to the base output, and the active adapters' parameters
        are the trainable ones (all of them, except adapters in inference mode and nodes frozen by their
        kind); the others are frozen. A ``modules_to_save`` module uses the copy of the one active adapter
        that has one (the original if none has); two active adapters with copies of the same module are an
        error, as in PEFT's ``ModulesToSaveWrapper``.

        ``inference_mode``: True freezes the activated adapters, False makes them trainable (their
        configs record it). None, the default, keeps each adapter's own mode: one loaded for inference
        stays frozen. (PEFT's default, False, would make it trainable.)
        """
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        available = ", ".join(self.peft_config)
        unknown = [n for n in names if n not in self.peft_config]
        if unknown:
            which = ", ".join(repr(n) for n in unknown)
            raise UsageError(f"no adapter named {which}" if len(unknown) == 1 else f"no adapters named {which}",
                            fix=f"use one of: {available}")
        if not names:
            raise UsageError("set_adapter got an empty list of adapters", fix=f"name at least one of: {available}")
        if len(set(names)) != len(names):
            raise UsageError(f"set_adapter got an adapter twice: {names}", fix="name each adapter once")
        saved = {}
        for module_name, wrapper in self._saved_wrappers():
            copies = [n for n in names if n in wrapper.modules_to_save]
            if len(copies) > 1:
                raise UsageError(f"adapters {copies} each have their own copy of {module_name!r} (modules_to_save); "
                                "only one of them can be active at a time",
                                fix="activate one of them, or add adapters without modules_to_save")
            saved[module_name] = copies[0] if copies else None
        if any(layer.merged for _, layer in self.tn_layers()):
            warn("the model is merged; unmerging before switching adapters")
            self.unmerge_adapter()
        if inference_mode is not None:  # a new config: one object may serve several adapters (and its owner)
            for name in names:
                self.peft_config[name] = dataclasses.replace(self.peft_config[name], inference_mode=bool(inference_mode))
        self._serve_forget(list(self._active_adapters) + names)
        self._active_adapters = names
        for _, layer in self.tn_layers():
            layer.active_adapters = list(names)
        for module_name, wrapper in self._saved_wrappers():
            wrapper.active_adapter = saved[module_name]
        self._node_groups = {}
        self._mark_trainable()

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter everywhere (not an active one)."""
        if adapter_name not in self.peft_config:
            raise UsageError(f"no adapter named {adapter_name!r}", fix=f"use one of: {', '.join(self.peft_config)}")
        if adapter_name in self._active_adapters:
            raise UsageError(f"adapter {adapter_name!r} is active", fix="set_adapter() other ones first")
        for _, layer in list(self.tn_layers()):
            layer.delete_adapter(adapter_name)
        for _, wrapper in self._saved_wrappers():
            if adapter_name in wrapper.modules_to_save:
                del wrapper.modules_to_save[adapter_name]
        if adapter_name in self.tn_shared:
            del self.tn_shared[adapter_name]
        for store in (self.peft_config, self.targets, self.networks):
            store.pop(adapter_name, None)
        self._node_groups = {}
        self._serve_forget([adapter_name], structure=True)

    def _mark_trainable(self) -> None:
        """Active adapters not loaded for inference are trainable (less the nodes frozen on purpose); others frozen."""
        trainable = {name for name in self._active_adapters
                     if name in self.peft_config and not self.peft_config[name].inference_mode}

        def mark(name: str, module: nn.Module) -> None:
            for param in module.parameters():
                param.requires_grad_(name in trainable and id(param) not in self._frozen)

        for _, layer in self.tn_layers():
            for name, adapter in layer.tn_adapters.items():
                mark(name, adapter)
        for name, nodes in self.tn_shared.items():
            mark(name, nodes)
        for _, wrapper in self._saved_wrappers():
            wrapper.original_module.requires_grad_(False)
            for name, module in wrapper.modules_to_save.items():
                mark(name, module)

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Context manager: run the base model alone (merged adapters are unmerged first)."""
        previous = self._disabled
        self._set_disabled(True)
        try:
            yield
        finally:
            self._set_disabled(previous)

    def disable_adapter_layers(self) -> None:
        self._set_disabled(True)

    def enable_adapter_layers(self) -> None:
        self._set_disabled(False)

    def _set_disabled(self, disabled: bool) -> None:
        self._disabled = disabled
        for _, layer in self.tn_layers():
            if disabled and layer.merged:
                layer.unmerge()
            layer.disable_adapters = disabled
        for _, wrapper in self._saved_wrappers():
            wrapper.disabled = disabled

    # ------------------------------------------------------------- merging
    def merge_adapter(self, adapter_names: Sequence[str] | None = None, safe_merge: bool = False) -> None:
        """Add the active (or named) adapters' dW into the base weights: ``W += dW`` for each (PEFT's
        ``merge(adapter_names=None)`` merges every active adapter)."""
        self._serve_forget(None)
        for _, layer in self.tn_layers():
            layer.merge(adapter_names, safe_merge=safe_merge)

    def unmerge_adapter(self) -> None:
        """Subtract every merged adapter's dW from the base weights."""
        self._serve_forget(None)
        for _, layer in self.tn_layers():
            layer.unmerge()

    def merge_and_unload(self, safe_merge: bool = False, adapter_names: Sequence[str] | None = None) -> nn.Module:
        """Merge (the active adapters, or ``adapter_names``), then return the base model with plain layers (and
        the active modules_to_save copies)."""
        return self._unload(merge=True, safe_merge=safe_merge, adapter_names=adapter_names)

    def unload(self) -> nn.Module:
        """Return the base model with plain layers and original modules, without merging."""
        return self._unload(merge=False)

    def _unload(self, *, merge: bool, safe_merge: bool = False, adapter_names: Sequence[str] | None = None) -> nn.Module:
        for name, layer in list(self.tn_layers()):
            if merge:
                layer.merge(adapter_names, safe_merge=safe_merge)
            else:
                layer.unmerge()
            self._replace(name, layer.base_layer)
        for name, wrapper in list(self._saved_wrappers()):
            self._replace(name, wrapper.active_module() if merge else wrapper.original_module)
        self.tn_shared = nn.ModuleDict()
        self.peft_config, self.targets, self.networks = {}, {}, {}
        self._node_groups = {}
        self.tn_banks, self._bank_of = nn.ModuleDict(), {}
        self._serve_forget(None, structure=True)
        return self.base_model

    # ------------------------------------------------------------- forward
    def _forward(self, *args: Any, adapter_names: Sequence[str] | None = None, **kwargs: Any) -> Any:
        if "forward" in self.base_model.__dict__:   # a forward patched onto the wrapped model (see __setattr__)
            return self._patched_forward(args, kwargs, adapter_names)
        if adapter_names is not None:
            with self._mixed_batch(adapter_names):
                return self.base_model(*args, **kwargs)
        with self._node_cache():
            return self.base_model(*args, **kwargs)

    def _patched_forward(self, args: tuple, kwargs: dict, adapter_names: Sequence[str] | None) -> Any:
        """The wrapped model's patched forward, inside this model's forward hooks; a patch that calls back into
        the original forward (this one: it was what the patcher read as ``model.forward``) gets the wrapped
        model's own class forward, instead of looping."""
        base = self.base_model
        if self.__dict__.get("_in_patched_forward"):
            return type(base).forward(base, *args, **kwargs)
        self.__dict__["_in_patched_forward"] = True
        try:
            with self._mixed_batch(adapter_names) if adapter_names is not None else self._node_cache():
                return base(*args, **kwargs)
        finally:
            self.__dict__["_in_patched_forward"] = False

    @contextmanager
    def _mixed_batch(self, adapter_names: Sequence[str], training: bool | None = None) -> Iterator[None]:
        """Row i uses adapter ``adapter_names[i]`` (``"__base__"``: none) in every layer (:mod:`tn_peft.model.mixed`);
        the nodes of all the named adapters are evaluated together first. ``training``: the mode of the model
        the forward runs in (default this one's)."""
        from .mixed import row_groups

        layers = [layer for _, layer in self.tn_layers()]
        training = self.training if training is None else training
        known = set(self.peft_config) | set(self._bank_of)
        groups = row_groups(adapter_names, known, training=training,
                            merged=any(layer.merged for layer in layers),
                            device=next((p.device for p in self.parameters()), "cpu"))
        module_names = [name for name in groups.names if name not in self._bank_of]
        cached = serving.usable(self) and not serving.sharded(self, module_names)
        if not cached and len(module_names) < len(groups.names):
            raise UsageError("adapters loaded with load_adapters (a bank) serve inference only, and this forward "
                             "computes gradients", fix="run it under torch.no_grad() (generate does)")
        try:
            for layer in layers:   # every layer: one without the named adapters still runs its rows bare
                layer.row_groups = groups
            if cached:
                context = serving.mixed_forward(self, adapter_names, groups, layers)
            else:
                self._serve_forget(module_names)   # gradients: see _node_cache
                with_nodes, node_groups = self._layer_nodes(module_names)
                batched = self.batch_nodes and not _sharded(node_groups)
                context = self._cached_nodes(with_nodes, node_groups) if batched else nullcontext()
            with context:
                yield
        finally:
            for layer in layers:
                layer.row_groups = None

    forward = _SignedForward()  # the base model's signature, so Trainer keeps the right dataset columns

    def generate(self, *args: Any, adapter_names: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """The base model's ``generate``, with every node evaluated once for the whole generation;
        ``adapter_names`` (one per sequence) generates a mixed-adapter batch (:mod:`tn_peft.model.mixed`)."""
        with torch.no_grad(), (self._node_cache() if adapter_names is None else self._mixed_batch(adapter_names)):
            return self.base_model.generate(*args, **kwargs)

    @contextmanager
    def _node_cache(self) -> Iterator[None]:
        """Evaluate all nodes of the active adapters at once (batched by kind and shape, across layers and
        adapters) for one forward; without gradients, from the inference cache (:mod:`tn_peft.model.serving`)."""
        if not serving.usable(self):   # a forward with gradients may precede an optimizer step, and fused
            self._serve_forget(self._active_adapters)   # optimizers update parameters without moving their versions
        if not self.batch_nodes or self._disabled:
            yield
            return
        layers, groups = self._layer_nodes(self._active_adapters)
        if not layers or layers[0][0].merged or _sharded(groups):
            yield
            return
        with (serving.single_forward(self, self._active_adapters, layers) if serving.usable(self)
              else self._cached_nodes(layers, groups)):
            yield

    def _layer_nodes(self, names: Sequence[str]) -> tuple[list, list]:
        """For adapters ``names``: per layer that has any, ``(layer, [(name, its node modules in operand order)])``,
        and those nodes' batching groups; built once per set of names (the modules, not their ids: a deep
        copy of the model copies these lists along with them)."""
        key = tuple(names)
        if key not in self._node_groups:
            if len(self._node_groups) >= _MAX_NODE_GROUPS:   # mixed batches over ever new adapter sets
                self._node_groups.clear()
            layers = [(layer, [(name, list(layer.tn_adapters[name].node_modules().values()))
                               for name in names if name in layer.tn_adapters]) for _, layer in self.tn_layers()]
            layers = [(layer, entries) for layer, entries in layers if entries]
            self._node_groups[key] = (layers, group_nodes([node for _, entries in layers
                                                          for _, modules in entries for node in modules]))
        return self._node_groups[key]

    @staticmethod
    @contextmanager
    def _cached_nodes(layers: list, groups: list) -> Iterator[None]:
        """Evaluate ``groups`` once and hand each layer its adapters' node tensors for one forward."""
        values = evaluate_groups(groups)
        for layer, entries in layers:
            layer.node_cache = {name: [values[id(node)] for node in nodes] for name, nodes in entries}
        try:
            yield
        finally:
            for layer, _ in layers:
                layer.node_cache = None

    # ------------------------------------------------------------ counting
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable parameters, all parameters)``."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> None:
        """Print PEFT's line: ``trainable params: T || all params: A || trainable%: P``."""
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
              f"trainable%: {100 * trainable / max(total, 1):.4f}")

    # ---------------------------------------------------------- checkpoint
    def adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
        """Checkpoint key -> live tensor for one adapter (default: :attr:`active_adapter`, the first active one;
        key names: :mod:`tn_peft.io.checkpoint`)."""
        return model_io.adapter_state_dict(self, adapter_name or self.active_adapter)

    def save_pretrained(self, save_directory: str | Path, selected_adapters: Sequence[str] | None = None,
                        **_: Any) -> None:
        """Write each adapter's ``adapter_model.safetensors`` + ``adapter_config.json`` (non-default ones in
        subfolders), active or not; ``selected_adapters`` picks some. A sharded (FSDP) adapter must be saved
        on every rank: its tensors are gathered (a collective) and rank 0 writes (:mod:`tn_peft.model.distributed`);
        an unsharded one is written by whichever rank calls (DDP: usually rank 0 alone)."""
        for name in selected_adapters or list(self.peft_config):
            if name not in self.peft_config:
                raise UsageError(f"no adapter named {name!r}", fix=f"use one of: {', '.join(self.peft_config)}")
            config = ckpt.make_config(self.peft_config[name].to_dict(), self.networks[name].to_spec(),
                                      self.targets[name])
            state = model_io.adapter_state_dict(self, name)
            sharded = any(is_sharded(tensor) for tensor in state.values())
            tensors = model_io.adapter_file_tensors(self, name, state)   # sharded: gathered on every rank
            if not sharded or is_main_process():
                ckpt.save_adapter_files(ckpt.adapter_directory(save_directory, name), config, tensors)
            if sharded:
                barrier()

    @classmethod
    def from_pretrained(cls, model: nn.Module, model_id: str | Path, adapter_name: str = "default",
                        is_trainable: bool = False, *, batch_nodes: bool = True) -> TnPeftModel:
        """Wrap ``model`` with the adapter saved in ``model_id`` (its ``adapter_name`` subfolder if there is one)."""
        directory = model_io.resolve_directory(model_id, adapter_name)
        saved = ckpt.read_adapter_config(directory)
        with spec_source(str(directory / ckpt.CONFIG_NAME)):
            config = AdapterConfig.from_dict(saved)
            config.inference_mode = not is_trainable
            targets = model_io.check_saved_targets(model, saved, directory)
            peft_model = cls(model, config, adapter_name, batch_nodes=batch_nodes, targets=targets,
                             layer_specs=model_io.saved_layer_specs(saved, directory))
        peft_model._load_weights(directory, adapter_name)
        if not is_trainable:
            peft_model.eval()
        return peft_model

    def load_adapter(self, model_id: str | Path, adapter_name: str, is_trainable: bool = False) -> None:
        """Add the adapter saved in ``model_id`` (or its ``adapter_name`` subfolder) as ``adapter_name``."""
        directory = model_io.resolve_directory(model_id, adapter_name)
        saved = ckpt.read_adapter_config(directory)
        with spec_source(str(directory / ckpt.CONFIG_NAME)):
            config = AdapterConfig.from_dict(saved)
            config.inference_mode = not is_trainable
            self.add_adapter(adapter_name, config,
                             targets=model_io.check_saved_targets(self.base_model, saved, directory),
                             layer_specs=model_io.saved_layer_specs(saved, directory))
        self._load_weights(directory, adapter_name)
        if not is_trainable:
            self.eval()

    def _load_weights(self, directory: Path, adapter_name: str) -> None:
        model_io.load_weights(self, directory, adapter_name)
        self._serve_forget([adapter_name])

    # ------------------------------------------------------------ serving
    def load_adapters(self, folders: str | Path | Sequence[str | Path], names: Sequence[str] | None = None
                      ) -> list[str]:
        """Load many saved adapters at once (a list of folders, or a glob pattern) as adapter banks for mixed
        batches (``adapter_names=``), all or none (:mod:`tn_peft.model.bank`); returns their names."""
        from .bank import load_adapters

        loaded = load_adapters(self, folders, names)
        self.eval()
        return loaded

    def configure_node_cache(self, max_adapters: int) -> None:
        """Keep at most ``max_adapters`` adapters' node tensors between inference forwards (least recently used
        dropped first; 0 keeps none). Each costs about LoRA's size at the same rank
        (:mod:`tn_peft.adapter.cache`); :meth:`node_cache_info` reports what is held."""
        if isinstance(max_adapters, bool) or not isinstance(max_adapters, int) or max_adapters < 0:
            raise UsageError(f"max_adapters must be an int >= 0, got {max_adapters!r}",
                            fix="e.g. model.configure_node_cache(max_adapters=256)")
        self._serve_cache.max_adapters = max_adapters
        self._serve_cache.trim()

    def node_cache_info(self) -> dict[str, Any]:
        """What the inference cache holds: adapters, bytes (node tensors + factor slabs), bound, hits, misses."""
        return self._serve_cache.info()

    def adapter_memory(self) -> dict[str, Any]:
        """Bytes per loaded adapter at rest (its tensors; a bank member its rows of the stacks) and the cache's."""
        from ..adapter.cache import tensor_bytes

        own = {name: tensor_bytes(list(model_io.adapter_state_dict(self, name).values())) for name in self.peft_config}
        banks = [bank.memory() for bank in self.tn_banks.values()]
        members = sum(b["members"] for b in banks)
        rest = sum(own.values()) + sum(b["stacked_bytes"] for b in banks)
        count = len(own) + members
        cache = self.node_cache_info()
        return {"adapters": count, "at_rest_bytes": rest, "at_rest_bytes_per_adapter": rest / max(count, 1),
                "bank_template_bytes": sum(b["template_bytes"] for b in banks),
                "cached_adapters": cache["adapters"], "cache_bytes": cache["bytes"],
                "cache_bytes_per_cached_adapter": cache["bytes_per_adapter"]}

    def adapter_modules_replaced(self, names: Sequence[str] | None = None) -> None:
        """Forget everything derived from adapter modules or their tensors (node groups, the inference node cache
        and its index) after code outside the engine replaced some: a budget's rebuilt modules, re-cast
        parameters. Without it the next no-grad forward would read the old modules."""
        self._node_groups = {}
        self._serve_forget(None if names is None else list(names), structure=True)

    def _serve_forget(self, names: Sequence[str] | None, *, structure: bool = False) -> None:
        """Drop cached node tensors of ``names`` (None: all); ``structure``: adapters or layers changed."""
        self._serve_cache.drop(None if names is None else list(names))
        if structure:
            self._serve_index = {}

    def _wrap_target(self, name: str, target: Any) -> TnLayer:
        """The wrapped layer at module ``name`` (wrapping the base module now if it is not yet)."""
        module = target.module
        if isinstance(module, TnLayer):
            return module
        layer = self._layer_class(target.layer_type.layer_class)(module)
        layer.active_adapters = list(self._active_adapters)
        layer.disable_adapters = self._disabled
        self._replace(name, layer)
        self._serve_forget(None, structure=True)
        return layer

    def _member_adapter(self, layer: TnLayer, name: str) -> nn.Module:
        """The adapter module that computes adapter ``name`` on ``layer``: its own, or its bank's template."""
        if name in layer.tn_adapters:
            return layer.tn_adapters[name]
        bank = self._bank_of[name]
        return bank.templates[f"t{bank._layers.index(layer)}"]

