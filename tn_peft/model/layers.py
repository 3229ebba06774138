"""Wrapped layers: ``y = base(x) + adapter(dropout(x))`` for the active adapter(s), with merge/unmerge.

- :class:`TnLinear` wraps ``nn.Linear`` (weight ``out x in``; bitsandbytes' 4-bit / 8-bit linears and
  torchao-quantized ones are ``nn.Linear`` too, see :mod:`tn_peft.model.base_layers`);
- :class:`TnConv1D` wraps transformers' GPT-2 ``Conv1D`` (weight stored ``in x out``: merging adds ``dW^T``);
- :class:`TnConv2d` wraps ``nn.Conv2d``, adapted as the ``(out, in/groups * kh * kw)`` matrix of its weight;
- :class:`ModulesToSave` keeps a trainable copy of a module per adapter (PEFT's ``modules_to_save``).

:data:`LAYER_TYPES` is the one table of supported base layer types, as PEFT's LoRA dispatchers
(``dispatch_default``) choose a layer class by the base layer's type: each row gives the base class,
the tn_peft layer class, whose ``dw_shape`` is the shape rule ``(out_features, in_features)`` of dW,
and whether ``target_modules="all-linear"`` takes it. :func:`layer_type` looks a module up in it
(one SpecError, naming the module and the supported types, for anything else); target matching
and :func:`tn_peft.model.targets.resolve_config` read the table through it, and injection
(:mod:`tn_peft.model`) wraps each module in its resolved row's ``layer_class``.

Each layer holds its adapters in ``tn_adapters`` (name -> :class:`~tn_peft.adapter.adapter.Adapter`) and
tracks ``active_adapters``, ``merged_adapters`` and ``disable_adapters``. Linear adapters run
``Adapter.apply(x, node tensors)``: the planner's program for the token count, which for the SVD
graphs contracts straight into the activations (``x -> x V -> x V diag(s) U^T``), never building dW;
under ``torch.compile`` that same dispatch and program are traced into the graph (no second path).
The node tensors come from the model's batched evaluation when it has filled ``node_cache``.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .base_layers import (
    compute_dtype,
    dense_weight,
    is_quantized,
    keep_cpu_layout,
    merge_into,
)
from ..errors import ShapeError, SpecError


#: layer -> the node tensors its last forward with gradients took from the model's batched evaluation
#: (``node_cache``), kept for gradient checkpointing's recomputation (:meth:`TnLayer.node_tensors`). Kept
#: beside the layers, not on them, so that copying or pickling a model after a forward never meets them.
_RECOMPUTE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _in_backward() -> bool:
    """True while autograd runs a backward pass (where checkpointing recomputes a forward); False inside a
    torch.compile trace (the compiled graph recomputes on its own)."""
    return not torch.compiler.is_compiling() and torch._C._current_graph_task_id() != -1


def adapter_dtype(module: nn.Module) -> torch.dtype:
    """Adapters train in float32 (float64 if the layer computes in float64), whatever the base's dtype
    (bfloat16, float16, or a quantized weight: :func:`tn_peft.model.base_layers.compute_dtype`)."""
    dtype = compute_dtype(module.base_layer if isinstance(module, TnLayer) else module)
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class TnLayer(nn.Module):
    """Base class of the wrapped layers; subclasses say how dW maps onto the base weight."""

    layer_type = ""

    @staticmethod
    def dw_shape(base_layer: nn.Module) -> tuple[int, int]:
        """``(out_features, in_features)`` of dW for ``base_layer`` (the layer type's shape rule)."""
        raise NotImplementedError

    @staticmethod
    def as_matrix(weight: torch.Tensor, out_features: int) -> torch.Tensor:
        """A tensor laid out like the base weight (the weight, its gradient) as the ``(out, in)`` matrix of dW
        (the inverse of :meth:`get_delta_weight`'s layout)."""
        return weight.reshape(out_features, -1)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        keep_cpu_layout(base_layer)  # bitsandbytes' CPU eval repacking breaks later training steps
        self.base_layer = base_layer
        self.out_features, self.in_features = (int(n) for n in self.dw_shape(base_layer))
        self.tn_adapters = nn.ModuleDict()
        self.tn_dropout = nn.ModuleDict()
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disable_adapters = False
        # adapter name -> node tensors, filled by TnPeftModel for one forward pass (batched evaluation)
        self.node_cache: dict[str, list[torch.Tensor]] | None = None
        # the rows of this forward's batch grouped by adapter (a mixed-adapter batch, tn_peft.model.mixed), or None
        self.row_groups = None
        # a mixed batch served from the model's inference cache (tn_peft.model.mixed.LayerServing), or None
        self.serving = None

    # ---------------------------------------------------------------- setup
    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    def update_layer(self, adapter_name: str, adapter: nn.Module, *, dropout: float = 0.0) -> None:
        """Add a built :class:`~tn_peft.adapter.adapter.Adapter` (built by :class:`tn_peft.model.model.TnPeftModel`) as ``adapter_name``."""
        if (adapter.in_features, adapter.out_features) != (self.in_features, self.out_features):
            raise ShapeError(f"adapter built for (out={adapter.out_features}, in={adapter.in_features}) "
                             f"cannot go on a layer of (out={self.out_features}, in={self.in_features})")
        self.tn_adapters[adapter_name] = adapter
        self.tn_dropout[adapter_name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name in self.merged_adapters:
            self.unmerge([adapter_name])
        for store in (self.tn_adapters, self.tn_dropout):
            if adapter_name in store:
                del store[adapter_name]
        self.active_adapters = [a for a in self.active_adapters if a != adapter_name]

    # ---------------------------------------------------------------- dW
    def node_tensors(self, adapter_name: str) -> list[torch.Tensor]:
        """The adapter's node tensors: from this forward's batched cache, else evaluated now.

        Gradient checkpointing reruns the layer's forward during backward, after the model's forward (and
        its cache) has ended. Non-reentrant checkpointing needs that rerun to repeat the same operations on
        the same inputs, so it gets the very tensors the first forward read from the cache (kept in
        :data:`_RECOMPUTE` by :meth:`_remember_cache`); reentrant checkpointing ran the first forward
        without gradients, so nothing is kept and the rerun evaluates the nodes itself, building the graph
        through which their gradients flow.
        """
        cache = self.node_cache
        if cache is None and _in_backward():
            cache = _RECOMPUTE.get(self)
        if cache is not None and adapter_name in cache:
            return cache[adapter_name]
        return self.tn_adapters[adapter_name].node_tensors()

    def delta_matrix(self, adapter_name: str, tensors: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """dW as the adapter's (out, in) matrix (``scale * contract(nodes)``, minus theta_0's for delta nets)."""
        return self.tn_adapters[adapter_name].delta_weight(tensors)

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """dW laid out like the base layer's weight (what merging adds)."""
        return self.delta_matrix(adapter_name)

    # ---------------------------------------------------------------- merge
    def merge(self, adapter_names: Sequence[str] | None = None, safe_merge: bool = False) -> None:
        """Add the adapters' dW into the base weight (``W += dW``); ``safe_merge`` checks for NaN/inf first.
        A quantized base is dequantized, merged and re-quantized (:func:`tn_peft.model.base_layers.merge_into`)."""
        for name in list(adapter_names or self.active_adapters):
            if name in self.merged_adapters or name not in self.tn_adapters:
                continue
            self._add_to_weight(name, +1, safe_merge)
            self.merged_adapters.append(name)

    def unmerge(self, adapter_names: Sequence[str] | None = None) -> None:
        """Subtract merged adapters' dW from the base weight, last merged first."""
        names = list(adapter_names) if adapter_names is not None else list(self.merged_adapters)
        for name in reversed(list(self.merged_adapters)):
            if name not in names:
                continue
            self._add_to_weight(name, -1, False)
            self.merged_adapters.remove(name)

    def _add_to_weight(self, name: str, sign: int, safe_merge: bool) -> None:
        """``W += sign * dW`` for adapter ``name`` (re-quantizing a quantized base)."""
        with torch.no_grad():
            delta = self.get_delta_weight(name) * sign
            if is_quantized(self.base_layer):
                merge_into(self.base_layer, delta, safe_merge=safe_merge, name=name)
                return
            weight = self.base_layer.weight
            delta = delta.to(weight.dtype)
            if not safe_merge:
                weight.add_(delta)
                return
            merged = weight + delta
            if not torch.isfinite(merged).all():
                raise ShapeError(f"merging adapter {name!r} gives NaN/inf weights; the adapter is broken")
            weight.copy_(merged)

    # -------------------------------------------------------------- forward
    def _remember_cache(self) -> None:
        """Keep (or forget) the node tensors this forward reads, for a checkpointed rerun (:meth:`node_tensors`)."""
        if torch.compiler.is_compiling():
            return
        if self.node_cache is not None and torch.is_grad_enabled():
            _RECOMPUTE[self] = self.node_cache
        elif not _in_backward():
            _RECOMPUTE.pop(self, None)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._remember_cache()
        if self.disable_adapters:
            if self.merged_adapters:
                self.unmerge()
            return self.base_layer(x, *args, **kwargs)
        result = self.base_layer(x, *args, **kwargs)
        if self.merged_adapters:
            return result
        if self.row_groups is not None:
            return self._mixed_forward(x, result)
        for name in self.active_adapters:
            if name in self.tn_adapters:
                out = self.adapter_output(name, self.tn_dropout[name](x))
                result = result + out.to(result.dtype)
        return result

    def _mixed_forward(self, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        """``result`` plus each row group's adapter output on its own rows (:mod:`tn_peft.model.mixed`)."""
        from .mixed import check_batch

        check_batch(self.row_groups, x)
        if self.serving is not None:
            return self.serving.output(self, x, result)
        for name, rows in self.row_groups.groups:
            if name not in self.tn_adapters:
                continue
            if rows.numel() == self.row_groups.batch:  # one adapter for the whole batch: no gather, no scatter
                result = result + self.adapter_output(name, self.tn_dropout[name](x)).to(result.dtype)
                continue
            out = self.adapter_output(name, self.tn_dropout[name](x.index_select(0, rows)))
            result = result.index_add(0, rows, out.to(result.dtype))
        return result

    def adapter_output(self, adapter_name: str, x: torch.Tensor) -> torch.Tensor:
        """``x @ dW^T`` contracted into the activations (Linear and Conv1D)."""
        return self.output_with(self.tn_adapters[adapter_name], self.node_tensors(adapter_name), x)

    def output_with(self, adapter: nn.Module, tensors: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``x @ dW^T`` of ``adapter`` from given node tensors (its own, cached ones, or a bank member's)."""
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"layer takes inputs with last dimension {self.in_features}, got shape {tuple(x.shape)}")
        # the planner's program for this token count; under torch.compile the same dispatch and
        # program are traced (see tn_peft.planner.runtime.dispatch)
        return adapter.apply(x, tensors)

    def extra_repr(self) -> str:
        return (f"{self.layer_type}, out={self.out_features}, in={self.in_features}, "
                f"adapters={list(self.tn_adapters)}, active={self.active_adapters}, merged={self.merged_adapters}")


class TnLinear(TnLayer):
    """``nn.Linear`` + adapters: ``y = x W^T + b + x dW^T``."""

    layer_type = "linear"

    @staticmethod
    def dw_shape(base_layer: nn.Module) -> tuple[int, int]:
        return base_layer.out_features, base_layer.in_features


class TnConv1D(TnLayer):
    """GPT-2 ``Conv1D`` + adapters. Its weight is stored ``in x out``, so merging adds ``dW^T``."""

    layer_type = "conv1d"

    @staticmethod
    def dw_shape(base_layer: nn.Module) -> tuple[int, int]:
        nx, nf = base_layer.weight.shape
        return int(nf), int(nx)

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        return self.delta_matrix(adapter_name).T

    @staticmethod
    def as_matrix(weight: torch.Tensor, out_features: int) -> torch.Tensor:
        return weight.T


class TnConv2d(TnLayer):
    """``nn.Conv2d`` + adapters; dW is the ``(out, in/groups * kh * kw)`` view of the kernel."""

    layer_type = "conv2d"

    @staticmethod
    def dw_shape(base_layer: nn.Module) -> tuple[int, int]:
        kh, kw = base_layer.kernel_size
        return base_layer.out_channels, base_layer.in_channels // base_layer.groups * kh * kw

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        return self.delta_matrix(adapter_name).reshape(self.base_layer.weight.shape)

    def output_with(self, adapter: nn.Module, tensors: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        kernel = adapter.delta_weight(tensors).reshape(self.base_layer.weight.shape)
        return self.base_layer._conv_forward(x.to(kernel.dtype), kernel, None)


def conv1d_class() -> type | None:
    """transformers' GPT-2 ``Conv1D`` (weight stored ``in x out``), or None without transformers."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is optional
        return None
    return Conv1D


@dataclass(frozen=True)
class LayerType:
    """One supported base layer type: its class (``base_class()``, None when the library that defines
    it is not installed), the tn_peft layer that wraps it (``layer_class.dw_shape`` is the shape rule),
    how errors name it, and whether ``target_modules="all-linear"`` takes it."""

    base_class: Callable[[], type | None]
    layer_class: type[TnLayer]
    label: str
    all_linear: bool

    @property
    def name(self) -> str:
        """``"linear"``, ``"conv1d"``, ``"conv2d"``: what ``adapter_config.json`` records as a target's ``type``."""
        return self.layer_class.layer_type

    def matches(self, module: nn.Module) -> bool:
        base = self.base_class()
        return base is not None and isinstance(module, base)

    def shape(self, module: nn.Module) -> tuple[int, int]:
        """``(out_features, in_features)`` of dW for ``module``, a layer of this type (plain or wrapped)."""
        if isinstance(module, TnLayer):
            return module.out_features, module.in_features
        out_features, in_features = self.layer_class.dw_shape(module)
        return int(out_features), int(in_features)


#: The supported base layer types, in dispatch order (the first whose base class the module is an
#: instance of wins, as PEFT's dispatchers). Quantized linears (bitsandbytes, torchao) are nn.Linear.
LAYER_TYPES: tuple[LayerType, ...] = (
    LayerType(lambda: nn.Linear, TnLinear, "nn.Linear", all_linear=True),
    LayerType(conv1d_class, TnConv1D, "transformers' Conv1D", all_linear=True),
    LayerType(lambda: nn.Conv2d, TnConv2d, "nn.Conv2d", all_linear=False),
)


def find_layer_type(module: nn.Module) -> LayerType | None:
    """The :data:`LAYER_TYPES` row of ``module`` (a base layer, or a tn_peft layer wrapping one), else None."""
    wrapped = isinstance(module, TnLayer)
    for row in LAYER_TYPES:
        if isinstance(module, row.layer_class) if wrapped else row.matches(module):
            return row
    return None


def layer_type(module: nn.Module, name: str = "?") -> LayerType:
    """The :data:`LAYER_TYPES` row of ``module``; SpecError naming the module (``name``) and the supported
    types for anything else."""
    row = find_layer_type(module)
    if row is None:
        labels = [r.label for r in LAYER_TYPES]
        supported = ", ".join(labels[:-1]) + f" and {labels[-1]}"
        raise SpecError(
            f"module {name!r} is a {type(module).__module__}.{type(module).__name__}, which tn_peft cannot adapt "
            f"(it adapts {supported})",
            fix="narrow target_modules to linear/conv layers (e.g. ['query', 'value']), or add the module to "
                "exclude_modules")
    return row


def layer_info(module: nn.Module, name: str = "?") -> tuple[str, int, int]:
    """``(layer_type, out_features, in_features)`` of an adaptable layer (plain or wrapped); SpecError for
    anything else (:func:`layer_type`).

    ``conv2d`` layers are adapted as the (out_channels, in_channels/groups * kh * kw) matrix of
    their weight.
    """
    row = layer_type(module, name)
    return (row.name, *row.shape(module))


def is_linear(module: nn.Module) -> bool:
    """A layer ``target_modules="all-linear"`` takes: ``nn.Linear`` or GPT-2 ``Conv1D`` (or a tn_peft layer
    wrapping one)."""
    row = find_layer_type(module)
    return row is not None and row.all_linear


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The layer's weight (dequantized when quantized) as its ``(out, in)`` matrix: Conv1D stores ``in x out``,
    Conv2d is flattened (its layer class's :meth:`~TnLayer.as_matrix`)."""
    base = module.base_layer if isinstance(module, TnLayer) else module
    row = layer_type(base)
    out_features, _ = row.shape(base)
    return row.layer_class.as_matrix(dense_weight(base), out_features)


class ModulesToSave(nn.Module):
    """PEFT's ``modules_to_save``: a frozen original plus one trainable copy per adapter.

    The forward uses the active adapter's copy, or the original when adapters are disabled (or the
    active adapter has no copy).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict()
        self.active_adapter: str | None = None
        self.disabled = False

    def add(self, adapter_name: str) -> None:
        copied = copy.deepcopy(self.original_module)
        for param in copied.parameters():
            param.requires_grad_(True)
        self.modules_to_save[adapter_name] = copied

    def active_module(self) -> nn.Module:
        if self.disabled or self.active_adapter not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.active_module()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save"):
                raise
            return getattr(self.active_module(), name)
