"""The models ``tn-peft finetune`` trains: an encoder (adapted or not) + a linear head on mean-pooled outputs.

A :class:`Method` says how the encoder is adapted: with a tn_peft graph (``kind="graph"``), with a
peft method (``kind="peft"``: LoRA, VeRA, FourierFT, IA3, ..., built from peft's own config class)
or not at all (``kind="head"``: frozen encoder, head only). Its learning rates are split by role:
``lr`` for the adapter's tensors, ``lr_diag`` for diagonal nodes (``s`` in ``U diag(s) V^T``),
``lr_head`` for the classifier head.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import DataError
from .report import DEFAULT_TARGETS


@dataclass
class Method:
    """One thing to train: a name for tables, how to adapt, and its optimizer settings."""

    name: str
    kind: str = "graph"  # graph | peft | head
    graph: str = "quantum_peft"
    graph_args: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    peft_type: str = "lora"  # peft only: the method's name (lora, vera, fourierft, ia3, ...)
    peft_args: dict[str, Any] = field(default_factory=dict)  # peft only: fields of its config (short names allowed)
    family: str = ""  # the frontier's marker group: graph name, peft method or "head" (default: from kind)
    lr: float = 1e-3
    lr_diag: float | None = None
    lr_head: float = 1e-3
    steps: int = 200
    schedule: str = "linear"  # the learning rate after warmup: linear | cosine | constant (train.SCHEDULES)
    angle_decay: float = 0.0  # lambda of the circular pull of circuit angles to their start (train.CircularDecay)

    def __post_init__(self) -> None:
        if not self.family:
            self.family = {"graph": Path(self.graph).stem, "peft": self.peft_type}.get(self.kind, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: ``--quantize-base`` choices -> transformers' BitsAndBytesConfig arguments (QLoRA's 4-bit nf4 with
#: double quantization; LLM.int8())
QUANTIZE_BASE = {
    "nf4": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
    "int8": {"load_in_8bit": True},
}


def stay_offline() -> None:
    """Never reach the Hugging Face Hub: set ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` (unless the
    user set them) before transformers, peft or bitsandbytes load (peft imports bitsandbytes, which
    looks up hub kernels when it loads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_encoder(path: str | Path, quantize_base: str | None = None, device: str = "cpu"):
    """The frozen pretrained encoder and its tokenizer from a local folder (never downloads); with
    ``quantize_base`` (nf4 | int8) its linear layers load quantized by bitsandbytes (compute in float32)."""
    stay_offline()
    from ...errors import require

    transformers = require("transformers", "transformers", "tn-peft finetune")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    options: dict[str, Any] = {}
    if quantize_base:
        if quantize_base not in QUANTIZE_BASE:
            raise DataError(f"--quantize-base {quantize_base!r} is not known. Fix: use one of {', '.join(QUANTIZE_BASE)}")
        require("bitsandbytes", "tn-peft[quantized]", f"--quantize-base {quantize_base}")
        kwargs = dict(QUANTIZE_BASE[quantize_base])
        if quantize_base == "nf4":
            kwargs["bnb_4bit_compute_dtype"] = torch.float32
        options = {"quantization_config": transformers.BitsAndBytesConfig(**kwargs), "device_map": device}
    encoder = transformers.AutoModel.from_pretrained(str(path), local_files_only=True, **options)
    if quantize_base:  # every method alike: bitsandbytes' CPU eval repacking would break training after validation
        from ...model.base_layers import keep_cpu_layout

        keep_cpu_layout(encoder)
    encoder.eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder, tokenizer


class Classifier(nn.Module):
    """``head(mean_pool(encoder(x)))``; the encoder's own parameters stay frozen."""

    def __init__(self, encoder: nn.Module, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(pooled)


def build_classifier(method: Method, encoder: nn.Module, num_labels: int) -> tuple[Classifier, Any]:
    """Adapt ``encoder`` as ``method`` says and put a head on it. Returns (classifier, adapted wrapper)."""
    hidden = encoder.config.hidden_size
    if method.kind == "head":
        wrapped = encoder
    elif method.kind == "peft":
        import peft

        config = peft_config(method)
        try:
            wrapped = peft.get_peft_model(encoder, config)
        except (TypeError, ValueError) as err:
            raise DataError(f"{method.name}: peft could not apply {type(config).__name__} to the model: {err}") from None
    elif method.kind == "graph":  # through peft's front door, as users run it (tn_peft.model.peft_method)
        import peft

        from ...model.peft_method import TnPeftConfig

        config = TnPeftConfig(graph=method.graph, graph_args=dict(method.graph_args),
                              target_modules=list(method.targets))
        wrapped = peft.get_peft_model(encoder, config)
    else:
        raise DataError(f"unknown method kind {method.kind!r}: use graph, peft or head")
    return Classifier(wrapped, hidden, num_labels), wrapped


def peft_config(method: Method):
    """peft's config for a ``kind="peft"`` method: its class from peft's own table, the spec's fields,
    ``target_modules`` from ``method.targets``, no dropout and no bias unless the spec says otherwise
    (IA3: no feed-forward modules unless given). Any peft error is one DataError naming the method."""
    import dataclasses

    from .grid import PEFT_FIXED, peft_config_class, peft_fields

    cls = peft_config_class(method.peft_type)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in PEFT_FIXED.items() if k in names}
    if "target_modules" in names:
        kwargs["target_modules"] = list(method.targets)
    if "feedforward_modules" in names:
        kwargs["feedforward_modules"] = []
    kwargs.update(peft_fields(method.peft_type, method.peft_args))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise DataError(f"{method.name}: peft's {cls.__name__} refused {kwargs}: {err}") from None


def check_method(method: Method, hidden: int | None = None) -> None:
    """Build ``method``'s adapter config without a model, so that a bad setting fails before any training:
    a peft method's config (with each given field's value checked against the field's type, which peft
    itself checks only when it builds layers); a graph's network, loaded, and its TnPeftConfig, and with
    ``hidden`` (the model's hidden size, from its config.json) its adapter built for a hidden x hidden layer."""
    if method.kind == "peft":
        import typing

        from .grid import peft_config_class, peft_fields

        cls = peft_config_class(method.peft_type)
        hints = typing.get_type_hints(cls)
        for field_name, value in peft_fields(method.peft_type, method.peft_args).items():
            if field_name in hints and not _fits(value, hints[field_name]):
                raise DataError(f"{method.name}: {field_name}={value!r} is not a valid value of peft's "
                                f"{cls.__name__}.{field_name} ({_type_name(hints[field_name])}). Fix: give it a "
                                f"{_type_name(hints[field_name])}")
        peft_config(method)
    elif method.kind == "graph":
        from ...graph.spec import load_graph
        from ...model.peft_method import TnPeftConfig

        from ...model.budget import budget_settings

        network = load_graph(method.graph, **dict(method.graph_args))
        budget_settings(network)
        if hidden:
            network.build(hidden, hidden)
        TnPeftConfig(graph=method.graph, graph_args=dict(method.graph_args), target_modules=list(method.targets))
    elif method.kind != "head":
        raise DataError(f"unknown method kind {method.kind!r}: use graph, peft or head")


def hidden_size(folder: str | Path) -> int | None:
    """A model folder's hidden size from its ``config.json`` (no weights read); None when it has none."""
    import json

    try:
        value = json.loads((Path(folder) / "config.json").read_text()).get("hidden_size")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type ``hint`` of a config field (int, float, str, bool, Optional, Union,
    Literal, list / dict of them); a type this does not know fits anything (peft checks it later)."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):  # peft computes with either (lora_alpha: int takes 0.5 in practice)
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, set):
        return isinstance(value, (list, tuple, set))
    if origin is dict:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def adapter_bits(method: Method) -> str:
    """The adapter's precision for tables: ``32`` (float32), or ``angles/diagonal`` bits of a quantized
    graph (its ``angle_bits`` / ``diagonal_bits`` parameters; 32 where one is not quantized)."""
    args = method.graph_args if method.kind == "graph" else {}
    angle, diagonal = (int(args.get(k) or 0) for k in ("angle_bits", "diagonal_bits"))
    return "32" if not (angle or diagonal) else f"{angle or 32}/{diagonal or 32}"


def adapter_file_bytes(wrapped: Any) -> tuple[int, int]:
    """``(file bytes, payload bytes)`` of the adapter's weights as its library saves them (tn_peft or
    peft ``save_pretrained``: ``adapter_model.safetensors``; the payload leaves out the file's header of
    key names and shapes); ``(0, 0)`` for the frozen encoder."""
    import tempfile

    from safetensors.torch import load_file

    if not hasattr(wrapped, "save_pretrained") or not hasattr(wrapped, "peft_config"):
        return 0, 0
    with tempfile.TemporaryDirectory(prefix="tn-peft-size-") as folder:
        wrapped.save_pretrained(folder)
        files = list(Path(folder).rglob("*.safetensors"))
        payload = sum(t.numel() * t.element_size() for f in files for t in load_file(str(f)).values())
        return sum(f.stat().st_size for f in files), payload


def adapter_parameter_count(model: Classifier) -> int:
    """Trainable parameters outside the head (the adapters')."""
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head."))


def parameter_groups(model: Classifier, method: Method) -> list[dict[str, Any]]:
    """Optimizer groups: head, diagonal nodes (``lr_diag``), every other adapter tensor (``lr``)."""
    from ...nodes.base import Node

    diag_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, Node) and module.kind == "diagonal":
            diag_ids.update(id(p) for p in module.parameters())
    groups: dict[str, list[nn.Parameter]] = {"head": [], "diag": [], "adapter": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        role = "head" if name.startswith("head.") else "diag" if id(p) in diag_ids else "adapter"
        groups[role].append(p)
    lrs = {"head": method.lr_head, "diag": method.lr_diag if method.lr_diag is not None else method.lr,
           "adapter": method.lr}
    return [{"params": ps, "lr": lrs[role], "name": role} for role, ps in groups.items() if ps]
