"""tn_peft as a peft method: ``get_peft_model(model, TnPeftConfig(graph=..., target_modules=...))``.

The second front door to the one engine. :class:`TnPeftConfig` is a ``peft.PeftConfig`` holding the
fields of :class:`~tn_peft.model.config.AdapterConfig` (graph, graph_args, target_modules, exclude_modules,
layers_to_transform / layers_pattern, layer_graph_args, alpha, dropout, modules_to_save, ...) plus peft's
``task_type``, ``inference_mode`` and ``init_weights``. :class:`TnPeftTuner` is its ``BaseTuner``: it
injects adapters through :class:`tn_peft.model.TnPeftModel` (target resolution, the planner, shared
nodes), whose layers here are the ``BaseTunerLayer`` flavour of :mod:`tn_peft.model.layers` (:data:`PEFT_LAYERS`),
and its ``_enable_peft_forward_hooks`` runs the engine's batched node evaluation (one per forward) and
mixed-adapter batches (``adapter_names=``). peft itself does the rest: saving and loading
(``adapter_config.json`` with ``peft_type: "TN_PEFT"``, ``peft_version``, ``task_type`` and the resolved
``graph_spec``), ``modules_to_save`` and the ``SEQ_CLS`` head, ``PeftModel.from_pretrained``,
``AutoPeftModel*``, trainers.

Registration (:func:`register`) adds ``TN_PEFT`` to peft's closed ``PeftType`` enum -- the one place
that touches peft's internals, checked against :data:`SUPPORTED_PEFT` -- then calls peft's
``register_peft_method``. ``import tn_peft`` registers as soon as peft is imported (before or after
tn_peft, see :mod:`tn_peft._peft_hook`) without importing peft itself.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import MissingDependencyError, SpecError, require, warn
from .config import AdapterConfig
from .layers import TnConv1D, TnConv2d, TnLayer, TnLinear, adapter_dtype
from .model import TnPeftModel

require("peft", "'peft>=0.21.0,<0.22'", "tn_peft's peft front door (TnPeftConfig, get_peft_model)")

from peft.config import PeftConfig  # noqa: E402 - after the check that peft is installed
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer  # noqa: E402
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING  # noqa: E402
from peft.utils.other import AuxiliaryTrainingWrapper  # noqa: E402

#: peft's name for the method (``PeftType.TN_PEFT``, written to adapter_config.json) and its key prefix
PEFT_TYPE = "TN_PEFT"
PREFIX = "tn_"
#: the peft releases whose internals (the PeftType enum, register_peft_method, BaseTuner's hooks) this
#: module was written against and tested with: [low, high)
SUPPORTED_PEFT = ("0.21.0", "0.22.0")
SUPPORTED_TEXT = f"peft>={SUPPORTED_PEFT[0]},<{SUPPORTED_PEFT[1]}"


def _internals_moved(peft, what: str, exc: BaseException | None = None) -> MissingDependencyError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return MissingDependencyError(
        f"tn_peft cannot register with peft {peft.__version__}: {what}{detail}. tn_peft's registration "
        f"(tn_peft/model/peft_method.py) supports {SUPPORTED_TEXT}. Fix: pip install '{SUPPORTED_TEXT}', or use "
        "tn_peft.get_model (the engine API, which needs no peft)")


def add_peft_type():
    """``peft.PeftType.TN_PEFT``, adding it to peft's closed ``PeftType`` enum the first time.

    This is the one place that edits peft's internals: a ``str`` enum member is made by hand and entered in
    the enum's member tables (``_member_map_``, ``_value2member_map_``, ``_member_names_``), as the ``enum``
    module does for members written in the class body. The peft version is checked against
    :data:`SUPPORTED_PEFT` (outside it: a warning), and the result is checked (``PeftType("TN_PEFT")``,
    ``PeftType.TN_PEFT``, membership in ``list(PeftType)``); if peft's internals moved, a
    MissingDependencyError names the supported range."""
    import peft
    from packaging.version import Version

    version = Version(peft.__version__)
    low, high = (Version(v) for v in SUPPORTED_PEFT)
    try:
        from peft.utils.peft_types import PeftType
    except ImportError as exc:
        raise _internals_moved(peft, "peft.utils.peft_types.PeftType is gone", exc) from None
    if PEFT_TYPE in getattr(PeftType, "__members__", {}):
        return PeftType[PEFT_TYPE]
    if not low <= version < high:
        warn(f"peft {peft.__version__} is outside the range tn_peft's peft registration was tested with "
             f"({SUPPORTED_TEXT}); registering anyway")
    try:
        if not (issubclass(PeftType, str) and isinstance(PeftType._member_names_, list)):
            raise TypeError("PeftType is no longer a str enum with a member list")
        member = str.__new__(PeftType, PEFT_TYPE)
        member._name_ = member._value_ = PEFT_TYPE
        member.__objclass__ = PeftType
        member._sort_order_ = len(PeftType._member_names_)
        PeftType._member_map_[PEFT_TYPE] = member
        PeftType._value2member_map_[PEFT_TYPE] = member
        PeftType._member_names_.append(PEFT_TYPE)
        type.__setattr__(PeftType, PEFT_TYPE, member)  # EnumType.__setattr__ refuses member names
    except (AttributeError, TypeError) as exc:
        raise _internals_moved(peft, "its PeftType enum cannot take a new member", exc) from None
    if PeftType(PEFT_TYPE) is not member or PeftType.TN_PEFT is not member or member not in list(PeftType):
        raise _internals_moved(peft, "a member added to PeftType is not found by value, name and iteration")
    return member


# ----------------------------------------------------------------------- config
_PEFT_CONFIG_FIELDS = {"base_model_name_or_path", "inference_mode"}  # PeftConfig has them already


def _config_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """AdapterConfig's fields (less those PeftConfig has), then ``init_weights`` and ``graph_spec``."""
    out = [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory,
                                               metadata=f.metadata))
           for f in dataclasses.fields(AdapterConfig) if f.name not in _PEFT_CONFIG_FIELDS]
    out.append(("init_weights", bool, dataclasses.field(default=True, metadata={
        "help": "True: the adapter starts as the identity (dW = 0, the graph's own initialization). False: every "
                "adapter parameter gets Gaussian noise (std 0.1), a start that is not the identity (what peft's "
                "method tests use to see that an adapter does something)."})))
    out.append(("graph_spec", Any, dataclasses.field(default=None, metadata={
        "help": "The resolved graph (Network.to_spec(), graph_args and alpha applied), written by save_pretrained "
                "so an adapter folder is self-contained; loading builds the adapter from it."})))
    return out


def _post_init(self) -> None:
    PeftConfig.__post_init__(self)
    self.peft_type = add_peft_type()
    if not isinstance(self.init_weights, bool):
        raise SpecError(f"init_weights must be True or False, got {self.init_weights!r}",
                        fix="pass init_weights=True (identity at init) or False (a random start)")
    if isinstance(self.modules_to_save, str):
        self.modules_to_save = [self.modules_to_save]
    if self.target_modules is None:  # the tuner fills in peft's default targets for the model type
        return
    checked = self.adapter_config()  # AdapterConfig's checks: one clear SpecError per bad field
    self.target_modules, self.exclude_modules = checked.target_modules, checked.exclude_modules
    self.layers_to_transform, self.layers_pattern = checked.layers_to_transform, checked.layers_pattern


def _adapter_config(self) -> AdapterConfig:
    """The engine's :class:`AdapterConfig` for this config (``modules_to_save`` left to peft's wrapper; the
    saved ``graph_spec``, when there is one, as the graph)."""
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(AdapterConfig) if hasattr(self, f.name)}
    values["modules_to_save"] = None
    if self.graph_spec is not None:
        values["graph"] = self.graph if _catalog_template_fits(values, self.graph_spec) else self.graph_spec
    return AdapterConfig(**values)


def _catalog_template_fits(values: dict[str, Any], graph_spec: Any) -> bool:
    """A saved config with ``layer_graph_args`` whose ``graph`` is a catalog name that still expands (with its
    ``graph_args`` and ``alpha``) to exactly the saved ``graph_spec``: then the catalog template is the graph, so a
    per-layer override of a parameter that shapes nodes (``layers`` of a circuit) is expanded again for its layers.
    The saved ``graph_spec`` has its parameters substituted into node options and could not (a pruned
    ``budget`` adapter, tn_peft.model.budget, has per-module ``layers``)."""
    from ..graph.spec import catalog

    graph = values.get("graph")
    if not values.get("layer_graph_args") or not isinstance(graph, str) or graph not in catalog():
        return False
    try:
        plain = AdapterConfig(**{**values, "graph": graph, "layer_graph_args": {}})
        return plain.network().to_spec() == graph_spec
    except SpecError:
        return False


def _to_dict(self) -> dict[str, Any]:
    """peft's dict (``peft_type``, ``task_type``, ...) with the graph fields as :meth:`AdapterConfig.to_dict`
    writes them (a Network graph becomes its spec) and ``graph_spec`` filled in."""
    data = {f.name: getattr(self, f.name) for f in dataclasses.fields(PeftConfig)}
    engine = self.adapter_config()
    data.update({k: v for k, v in engine.to_dict().items() if k not in _PEFT_CONFIG_FIELDS})
    data["modules_to_save"] = list(self.modules_to_save) if self.modules_to_save is not None else None
    data["init_weights"] = self.init_weights
    data["graph_spec"] = engine.network().to_spec()
    return data


def _make_config_class() -> type:
    return dataclasses.make_dataclass("TnPeftConfig", _config_fields(), bases=(PeftConfig,), namespace={
        "__module__": __name__, "__post_init__": _post_init, "adapter_config": _adapter_config,
        "to_dict": _to_dict,
        "__doc__": "A peft config for a tensor-network adapter: AdapterConfig's fields (graph, graph_args, "
                   "target_modules, ...) plus peft's task_type, inference_mode and init_weights.\n\n"
                   ">>> TnPeftConfig(graph='quantum_peft', target_modules=['q_proj', 'v_proj'])  # doctest: +SKIP"})


add_peft_type()
TnPeftConfig = _make_config_class()


# ----------------------------------------------------------------------- layers
class TnTunerLayer(BaseTunerLayer):
    """What peft's ``BaseTunerLayer`` reads, on a tn_peft layer: the adapters live in ``tn_adapters``;
    ``active_adapters`` and ``disable_adapters`` are peft's fields (``_active_adapter``,
    ``_disable_adapters``), settable as tn_peft's layers set them. Merging, unmerging, deleting and the
    forward are tn_peft's (:class:`tn_peft.model.layers.TnLayer` comes first in each layer's MRO)."""

    adapter_layer_names = ("tn_adapters",)
    other_param_names = ()

    @property
    def active_adapters(self) -> list[str]:
        active = self._active_adapter
        return [active] if isinstance(active, str) else list(active)

    @active_adapters.setter
    def active_adapters(self, names: Sequence[str]) -> None:
        self._active_adapter = list(names)

    @property
    def active_adapter(self) -> str | list[str]:
        return self._active_adapter

    @property
    def disable_adapters(self) -> bool:
        return self._disable_adapters

    @disable_adapters.setter
    def disable_adapters(self, value: bool) -> None:
        self._disable_adapters = bool(value)

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        """dW is additive (``W' = W + dW``) and laid out like the weight: peft's ``convert_to_lora`` applies."""
        return True


class PeftTnLinear(TnLinear, TnTunerLayer):
    """:class:`tn_peft.model.layers.TnLinear` as a peft tuner layer."""


class PeftTnConv1D(TnConv1D, TnTunerLayer):
    """:class:`tn_peft.model.layers.TnConv1D` (GPT-2) as a peft tuner layer."""


class PeftTnConv2d(TnConv2d, TnTunerLayer):
    """:class:`tn_peft.model.layers.TnConv2d` as a peft tuner layer."""

    def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
        """peft's ``convert_to_lora`` converts linear layers only (0.21)."""
        return False


#: tn_peft layer class -> its peft tuner-layer flavour (every row of tn_peft.model.layers.LAYER_TYPES)
PEFT_LAYERS: dict[type[TnLayer], type[TnLayer]] = {TnLinear: PeftTnLinear, TnConv1D: PeftTnConv1D,
                                                   TnConv2d: PeftTnConv2d}


# ----------------------------------------------------------------------- tuner
class _Engine(TnPeftModel):
    """The engine under the tuner: :class:`TnPeftModel` wrapping modules in :data:`PEFT_LAYERS` classes."""

    @staticmethod
    def _layer_class(layer_class: type[TnLayer]) -> type[TnLayer]:
        return PEFT_LAYERS[layer_class]


def _restore_adapter_dtype(engine: TnPeftModel) -> None:
    """Adapters train in float32 (:func:`tn_peft.model.layers.adapter_dtype`). TRL's SFTTrainer casts every trainable
    parameter of a k-bit model to bfloat16 after ``get_peft_model`` (QLoRA's advice for LoRA factors); a circuit
    angle in bfloat16 has a step of 2**-7 near 1, so updates below it -- every update at TRL's default learning
    rate -- are lost and the circuit silently stops training. Such parameters are cast back, with a warning,
    at the first training forward (before the optimizer has any state for them)."""
    cast = 0
    for _, layer in engine.tn_layers():
        want = adapter_dtype(layer)
        for param in layer.tn_adapters.parameters():
            if param.dtype in (torch.bfloat16, torch.float16) and param.dtype != want:
                param.data = param.data.to(want)
                cast += 1
    if cast:
        engine.adapter_modules_replaced()
        warn(f"{cast} tn_peft adapter parameters had been cast to 16-bit floats (TRL does so for k-bit models); "
             "they train in float32 (a circuit angle's bfloat16 step of 2**-7 would swallow its updates), so they "
             "were cast back")


def _random_start(engine: TnPeftModel, adapter_name: str, seed: int = 0) -> None:
    """``init_weights=False``: Gaussian noise (std 0.1) on every parameter of the adapter (dW != 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in engine.adapter_state_dict(adapter_name).values():
            if tensor.is_floating_point() and isinstance(tensor, nn.Parameter):
                noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
                tensor.add_(0.1 * noise.to(device=tensor.device, dtype=tensor.dtype))


class TnPeftTuner(BaseTuner):
    """peft's ``BaseTuner`` for tensor-network adapters; injection, switching, disabling and the forward
    hooks run the engine (:class:`tn_peft.model.TnPeftModel`), peft's generic code does the rest."""

    prefix = PREFIX
    tuner_layer_cls = TnTunerLayer
    target_module_mapping = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    uses_shared_state = True  # LoTR's shared nodes live on the tuner (tn_shared)

    @property
    def batch_nodes(self) -> bool:
        """Evaluate same-kind same-shape nodes of all layers together once per forward (the engine's
        ``batch_nodes``, default True)."""
        return self._engine.batch_nodes

    @batch_nodes.setter
    def batch_nodes(self, value: bool) -> None:
        self._engine.batch_nodes = bool(value)
        self._engine._node_groups = {}

    def _prepare_adapter_config(self, peft_config, model_config):
        if peft_config.target_modules is None:
            model_type = model_config.get("model_type")
            if model_type not in self.target_module_mapping:
                raise SpecError(f"TnPeftConfig needs target_modules: tn_peft knows no default targets for "
                                f"model type {model_type!r}", fix="pass e.g. target_modules=['q_proj', 'v_proj']")
            peft_config.target_modules = list(self.target_module_mapping[model_type])
        return peft_config

    def _create_and_replace(self, *args: Any, **kwargs: Any) -> None:  # injection is the engine's
        raise NotImplementedError("TnPeftTuner injects through tn_peft's engine (inject_adapter)")

    @staticmethod
    def _check_target_module_exists(peft_config, key: str) -> bool:
        from .module_names import match_name

        return bool(match_name(key, peft_config.target_modules))

    def inject_adapter(self, model: nn.Module, adapter_name: str, autocast_adapter_dtype: bool = True,
                       low_cpu_mem_usage: bool = False, state_dict: dict | None = None) -> None:
        """Add adapter ``adapter_name`` (``self.peft_config[adapter_name]``) through the engine: targets
        resolved by :func:`tn_peft.model.targets.resolve_config`, networks built and planned, modules wrapped, the
        adapter trainable unless the config is in inference mode. Adapters are float32 whatever the base's
        dtype (``autocast_adapter_dtype`` has nothing to do); targets come from the config, never from a
        ``state_dict``'s keys, and adapters are built on the base layers' device (``low_cpu_mem_usage`` is
        not used)."""
        config = self._prepare_adapter_config(self.peft_config[adapter_name], self.get_model_config(model))
        self._check_new_adapter_config(config)
        engine_config = config.adapter_config()
        engine = self.__dict__.get("_engine")
        if engine is None:
            engine = _Engine(model, engine_config, adapter_name)
            self.__dict__["_engine"] = engine     # not a submodule: the model is self.model already
            self.tn_shared = engine.tn_shared      # LoTR's shared nodes: saved and moved with the tuner
        else:
            engine.add_adapter(adapter_name, engine_config)
        if not config.init_weights:
            _random_start(engine, adapter_name)
        self.targeted_module_names = engine.targeted_module_names

    # ------------------------------------------------------ switching
    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        super().set_adapter(adapter_name, inference_mode=inference_mode)   # peft's modules_to_save wrappers
        self._engine.set_adapter(adapter_name, inference_mode=inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        """As peft: an active adapter's place goes to the other active ones, else to the first remaining."""
        engine = self._engine
        if adapter_name in engine.active_adapters:
            rest = ([n for n in engine.active_adapters if n != adapter_name]
                    or [n for n in engine.peft_config if n != adapter_name][:1])
            if rest:
                engine.set_adapter(rest)
            else:  # the last adapter: none stays active
                engine._active_adapters = []
        if adapter_name in engine.peft_config:
            engine.delete_adapter(adapter_name)
        super().delete_adapter(adapter_name)   # peft's config dict and modules_to_save copies

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        self._engine._set_disabled(not enabled)
        for module in self.model.modules():
            if isinstance(module, AuxiliaryTrainingWrapper):
                module.enable_adapters(enabled)

    # ------------------------------------------------------ forward
    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, adapter_names: Sequence[str] | None = None,
                                   **kwargs: Any) -> Iterator[None]:
        """One forward (or one ``generate``): every node of the active adapters evaluated once, batched by
        kind and shape; with ``adapter_names`` (one per row) a mixed-adapter batch (:mod:`tn_peft.model.mixed`)."""
        engine = self._engine
        if self.training:
            _restore_adapter_dtype(engine)
        if adapter_names is None:
            with engine._node_cache():
                yield
            return
        with engine._mixed_batch(adapter_names, training=self.training):
            yield

    # ------------------------------------------------------ state dict keys
    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        """``...q_proj.tn_adapters.<adapter>.nodes.U.weight`` -> ``...q_proj.tn_adapters.nodes.U.weight`` (and
        ``tn_shared.<adapter>.``): the adapter's name is the entry of tn_peft's per-adapter containers, not
        the second-to-last part peft's default strips. Loading maps keys back through this same function."""
        return re.sub(rf"(^|\.)(tn_adapters|tn_shared)\.{re.escape(adapter_name)}\.", r"\1\2.", key)

    @classmethod
    def _get_adapter_state_dict(cls, model: nn.Module, config, adapter_name: str, state_dict: dict[str, torch.Tensor],
                                unwanted_adapter_names: list[str]) -> dict[str, torch.Tensor]:
        """peft's entries of this adapter, with the parameters trained quantized packed under two keys as in
        tn_peft's own format (:func:`tn_peft.io.checkpoint.pack_quantized`), ordered by their saved keys."""
        from ..io import checkpoint as ckpt

        tensors = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        quantizers = {k: q for k, q in ckpt.state_quantizers(model).items() if k in tensors}
        if not quantizers:
            return tensors
        return ckpt.encode_tensors(tensors, quantizers, order=lambda k: cls._saved_key(k, adapter_name))

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model: nn.Module, config, adapter_name: str,
                                           state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A file's entries back to the model's keys; the packed quantized tensors first split and decoded to
        the values the adapter trained with (files without them, older ones included, load as they are)."""
        from ..io import checkpoint as ckpt

        if ckpt.QUANTIZED_CODES in state_dict or ckpt.QUANTIZED_SCALES in state_dict:
            live = model.state_dict(keep_vars=True)
            quantizers, shapes = {}, {}
            for key, quantizer in ckpt.state_quantizers(model).items():
                saved = cls._saved_key(key, adapter_name)
                if saved != key and key in live:   # this adapter's (the others keep their names)
                    quantizers[saved], shapes[saved] = quantizer, tuple(live[key].shape)
            state_dict = ckpt.decode_tensors(ckpt.WEIGHTS_NAME, state_dict, quantizers, shapes)
        return super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)

    @classmethod
    def _saved_key(cls, key: str, adapter_name: str) -> str:
        """A model key as the file names it (:meth:`_remove_adapter_name_from_key`), always under PREFIX."""
        from ..io import checkpoint as ckpt

        saved = cls._remove_adapter_name_from_key(key, adapter_name)
        return saved if saved.startswith(ckpt.PREFIX) or saved == key else ckpt.PREFIX + saved

    def _unload_and_optionally_merge(self, *args: Any, **kwargs: Any):
        model = super()._unload_and_optionally_merge(*args, **kwargs)
        self._engine._node_groups = {}
        return model


# ----------------------------------------------------------------------- register
def register() -> None:
    """Register ``tn_peft`` with peft (``PeftType.TN_PEFT``; :class:`TnPeftConfig`, :class:`TnPeftTuner`,
    prefix ``tn_``), once. After it ``get_peft_model``, ``PeftModel.from_pretrained``, ``AutoPeftModel*``
    and ``PeftConfig.from_pretrained`` know the method."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    peft_type = add_peft_type()
    if PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type) is TnPeftTuner:
        return
    try:
        register_peft_method(name=PEFT_TYPE.lower(), config_cls=TnPeftConfig, model_cls=TnPeftTuner, prefix=PREFIX)
    except (TypeError, ValueError, KeyError) as exc:
        raise _internals_moved(sys.modules["peft"], "register_peft_method refused tn_peft", exc) from None
    if (PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type) is not TnPeftConfig
            or PEFT_TYPE_TO_PREFIX_MAPPING.get(peft_type) != PREFIX):
        raise _internals_moved(sys.modules["peft"], "register_peft_method did not fill peft's mapping tables")


register()

__all__ = ["PEFT_LAYERS", "PEFT_TYPE", "PREFIX", "SUPPORTED_PEFT", "TnPeftConfig", "TnPeftTuner", "add_peft_type",
           "register"]
