"""Quantized base layers (QLoRA-style): which ones tn_peft adapts, their dense weight, and merging onto them.

A base layer whose weight is stored quantized stays quantized; the adapter beside it trains in
float32 (float64 on a float64 compute dtype) and its output ``x dW^T`` is added in the layer's
output dtype. The supported kinds, one :class:`QuantizedKind` each in :data:`KINDS`:

- ``bnb-4bit``: ``bitsandbytes.nn.Linear4bit`` (nf4 / fp4, with or without double quantization:
  what transformers' ``BitsAndBytesConfig(load_in_4bit=True)`` builds);
- ``bnb-8bit``: ``bitsandbytes.nn.Linear8bitLt`` (LLM.int8(), ``load_in_8bit=True``);
- ``torchao-int8``: an ``nn.Linear`` whose weight is torchao's ``Int8Tensor`` (``quantize_`` with
  ``Int8WeightOnlyConfig``).

Merging follows PEFT: ``W_q <- Q(D(W_q) + dW)`` (dequantize, add, re-quantize with the layer's own
settings). The re-quantization rounds, so the merged layer differs from ``base + adapter`` by the
quantizer's error on the new weight: :func:`merge_into` returns ``max |Q(D(W_q) + dW) - (D(W_q) + dW)|``
relative to ``max |D(W_q) + dW|`` and warns with it; unmerging rounds once more. Other torchao
weight types refuse to merge, naming the type (they cannot be re-quantized from the tensor alone).

On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight at its first eval-mode forward
and from then on runs every forward through a bfloat16 kernel, whose outputs differ from the
dequantized reference by about 1e-2 relative, and whose in-place bias add fails in a training step
after it ("a view of a leaf Variable that requires grad is being used in an in-place operation").
:func:`keep_cpu_layout` turns that repacking off (tn_peft does so on every 4-bit layer it adapts,
and ``tn-peft finetune --quantize-base`` on the whole model); :func:`dense_weight` unpacks a weight
that was repacked anyway, so merging reads the true ``D(W_q)``.

bitsandbytes and torchao are optional (``pip install tn-peft[quantized]``); a model can only hold
their layers when they are installed, so nothing here imports them until such a layer is seen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ShapeError, warn


@dataclass(frozen=True)
class QuantizedKind:
    """How to read and rewrite the weight of one kind of quantized linear layer."""

    name: str
    matches: Callable[[nn.Module], bool]
    dequantize: Callable[[nn.Module], torch.Tensor]      # (out, in), in the layer's compute dtype
    requantize: Callable[[nn.Module, torch.Tensor], None]
    compute_dtype: Callable[[nn.Module], torch.dtype]


# ------------------------------------------------------------------ bitsandbytes
def _bnb_class(name: str) -> type | None:
    bnb = sys.modules.get("bitsandbytes")
    return getattr(bnb.nn, name, None) if bnb is not None else None


def _is_bnb(name: str) -> Callable[[nn.Module], bool]:
    def matches(module: nn.Module) -> bool:
        cls = _bnb_class(name)
        return cls is not None and isinstance(module, cls)
    return matches


def _bnb_dequantize(module: nn.Module) -> torch.Tensor:
    from peft.utils.integrations import dequantize_bnb_weight

    weight = module.weight
    if _is_bnb("Linear8bitLt")(module):
        state = module.state
    else:
        if getattr(weight.quant_state, "packing_format_for_cpu", False):
            # bitsandbytes repacks a 4-bit weight for its AVX512-BF16 CPU kernel at the first eval forward;
            # back to the standard layout (as bitsandbytes does itself before saving) to dequantize it
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)
        state = weight.quant_state
    return dequantize_bnb_weight(weight, state=state).to(_bnb_compute_dtype(module))


def _bnb4_requantize(module: nn.Module, weight: torch.Tensor) -> None:
    import bitsandbytes as bnb

    old = module.weight
    kwargs = {k: v for k, v in old.__dict__.items() if not k.startswith("_") and k != "data"}
    kwargs.update(requires_grad=False, bnb_quantized=False)
    module.weight = bnb.nn.Params4bit(weight.to("cpu"), **kwargs).to(old.device)


def _bnb8_requantize(module: nn.Module, weight: torch.Tensor) -> None:
    import bitsandbytes as bnb

    old = module.weight
    module.weight = bnb.nn.Int8Params(weight.to("cpu"), requires_grad=False,
                                      has_fp16_weights=old.has_fp16_weights).to(old.device)
    module.state.reset_grads()


def _bnb_compute_dtype(module: nn.Module) -> torch.dtype:
    dtype = getattr(module, "compute_dtype", None)
    if dtype is None and module.bias is not None:
        dtype = module.bias.dtype
    return dtype or torch.float32


# ------------------------------------------------------------------ torchao
def _torchao_weight(module: nn.Module) -> bool:
    utils = sys.modules.get("torchao.utils")
    base = getattr(utils, "TorchAOBaseTensor", None) if utils is not None else None
    return isinstance(module, nn.Linear) and base is not None and isinstance(module.weight, base)


def _torchao_int8(module: nn.Module) -> bool:
    if not _torchao_weight(module):
        return False
    from torchao.quantization import Int8Tensor

    return isinstance(module.weight, Int8Tensor) and getattr(module.weight, "act_quant_kwargs", None) is None


def _torchao_requantize(module: nn.Module, weight: torch.Tensor) -> None:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    del module.weight
    module.weight = nn.Parameter(weight, requires_grad=False)
    quantize_(module, Int8WeightOnlyConfig())


KINDS: tuple[QuantizedKind, ...] = (
    QuantizedKind("bnb-4bit", _is_bnb("Linear4bit"), _bnb_dequantize, _bnb4_requantize, _bnb_compute_dtype),
    QuantizedKind("bnb-8bit", _is_bnb("Linear8bitLt"), _bnb_dequantize, _bnb8_requantize, _bnb_compute_dtype),
    QuantizedKind("torchao-int8", _torchao_int8, lambda m: m.weight.dequantize(), _torchao_requantize,
                  lambda m: m.weight.dtype),
)


def keep_cpu_layout(model: nn.Module) -> int:
    """Turn off bitsandbytes' CPU eval-time repacking on every 4-bit layer in ``model`` (module
    docstring); returns how many layers it changed."""
    count = 0
    for module in model.modules():
        if _is_bnb("Linear4bit")(module) and getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def quantized_kind(module: nn.Module) -> QuantizedKind | None:
    """The :class:`QuantizedKind` of a quantized linear layer tn_peft can merge onto, else None (a float
    layer, or a torchao weight type it runs beside but cannot re-quantize)."""
    for kind in KINDS:
        if kind.matches(module):
            return kind
    return None


def is_quantized(module: nn.Module) -> bool:
    """True for a layer whose weight is stored quantized (any bitsandbytes or torchao layer)."""
    return quantized_kind(module) is not None or _torchao_weight(module)


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype the layer computes in: its compute dtype when quantized, else its weight's dtype."""
    kind = quantized_kind(module)
    if kind is not None:
        return kind.compute_dtype(module)
    return module.weight.dtype


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The layer's weight as a dense tensor in its own layout (dequantized when quantized)."""
    kind = quantized_kind(module)
    if kind is not None:
        return kind.dequantize(module)
    if _torchao_weight(module):
        return module.weight.dequantize()
    return module.weight


def merge_into(module: nn.Module, delta: torch.Tensor, *, safe_merge: bool = False, name: str = "?") -> float:
    # ``name``: the adapter's, for the messages
    """``W_q <- Q(D(W_q) + delta)`` on a quantized layer; returns the relative rounding error it made
    (``max |merged - (D(W_q) + delta)| / max |D(W_q) + delta|``) and warns with it.

    ShapeError for a torchao weight type that cannot be re-quantized, and (``safe_merge``) for NaN/inf.
    """
    kind = quantized_kind(module)
    if kind is None:
        what = f"its {type(module.weight).__name__} weight" if _torchao_weight(module) else "it is not quantized"
        raise ShapeError(f"layer {name!r} cannot be merged by re-quantizing: {what} (tn_peft re-quantizes "
                         f"bitsandbytes 4-bit / 8-bit and torchao Int8WeightOnly layers)")
    with torch.no_grad():
        target = kind.dequantize(module).to(torch.float32) + delta.to(torch.float32)
        if safe_merge and not torch.isfinite(target).all():
            raise ShapeError(f"merging into layer {name!r} gives NaN/inf weights; the adapter is broken")
        kind.requantize(module, target.to(kind.compute_dtype(module)))
        error = float((kind.dequantize(module).to(torch.float32) - target).abs().max() / target.abs().max().clamp_min(1e-30))
    warn(f"adapter {name!r} merged into a {kind.name} layer: the weight was re-quantized, relative "
         f"rounding error {error:.2e} of max |W + dW| (the merged layer's outputs differ from base + "
         f"adapter by the quantizer's error)")
    return error


__all__ = ["KINDS", "QuantizedKind", "compute_dtype", "dense_weight", "is_quantized", "keep_cpu_layout", "merge_into",
           "quantized_kind"]
