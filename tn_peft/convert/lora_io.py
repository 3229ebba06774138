"""Read and write Hugging Face PEFT LoRA checkpoints (``adapter_config.json`` + ``adapter_model.safetensors``).

Per layer ``dW = scale * B @ A`` with ``A = lora_A.weight`` (r, in), ``B = lora_B.weight`` (out, r) and
``scale = alpha / r`` (``alpha / sqrt(r)`` with ``use_rslora``); r and alpha come from
``rank_pattern`` / ``alpha_pattern`` matched the way peft matches them. ``fan_in_fan_out`` (GPT-2's
Conv1D) only transposes the *merged* weight: B A is always (out, in) in the layer's math sense.
Every PEFT setting that changes dW in a way a plain ``scale * B A`` cannot express is refused with a
:class:`~tn_peft.errors.CheckpointError` naming the file and the setting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, SpecError
from ..model.module_names import pattern_key
from ..patterns import check_pattern
from .linalg import lora_scale

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
LEGACY_WEIGHTS_NAME = "adapter_model.bin"
PREFIX = "base_model.model."

#: config key -> why it cannot be converted exactly (refused when set to anything but its default).
UNSUPPORTED = {
    "use_dora": "DoRA rescales every column of W + dW by a learned magnitude, which is not a low-rank dW",
    "lora_bias": "lora_bias adds a trained bias vector beside dW",
    "target_parameters": "LoRA on raw nn.Parameters (MoE experts) is not a per-module dW",
    "trainable_token_indices": "trainable tokens change embedding rows, not a low-rank dW",
    "layer_replication": "layer replication changes the base model's architecture",
    "use_qalora": "QA-LoRA pools the input groups before A",
    "use_bdlora": "block-diagonal LoRA shares factors across shards",
    "alora_invocation_tokens": "activated LoRA applies dW only after invocation tokens",
    "arrow_config": "Arrow routes between several LoRA experts",
    "kasa_config": "KaSA adds a trainable singular-value vector and modifies the base weight",
    "monteclora_config": "MonteCLoRA samples the factors",
    "velora_config": "VeLoRA changes the forward pass",
}
#: init_lora_weights values that rewrite the base weights (the checkpoint is a delta on a residual model).
BASE_MODIFYING_INITS = ("pissa", "corda", "olora", "loftq", "lora_ga", "kasa")

_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>A|B)(?:\.(?P<adapter>[^.]+))?\.weight$")


@dataclass
class LoraLayer:
    """One adapted module: ``dW = scale * B @ A``, B (out, r), A (r, in), float32 or as stored."""

    name: str
    A: torch.Tensor
    B: torch.Tensor
    alpha: float
    use_rslora: bool = False

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.A.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.B.shape[0])

    @property
    def scale(self) -> float:
        return lora_scale(self.alpha, self.rank, self.use_rslora)

    def delta_weight(self) -> torch.Tensor:
        """``scale * B @ A`` as an (out, in) float64 tensor."""
        return self.scale * (self.B.to(torch.float64) @ self.A.to(torch.float64))

    def num_parameters(self) -> int:
        return self.A.numel() + self.B.numel()


@dataclass
class LoraCheckpoint:
    """A PEFT LoRA checkpoint in memory: its config, its layers (by module name) and copied-through tensors."""

    directory: Path
    config: dict[str, Any]
    layers: dict[str, LoraLayer]
    modules_to_save: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def use_rslora(self) -> bool:
        return bool(self.config.get("use_rslora", False))

    @property
    def fan_in_fan_out(self) -> bool:
        return bool(self.config.get("fan_in_fan_out", False))


def read_config(directory: str | Path) -> dict[str, Any]:
    """``adapter_config.json`` of a LoRA checkpoint, checked to be a LoRA that converts exactly."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint folder")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a PEFT LoRA checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    check_config(config, path)
    return config


def check_config(config: Mapping[str, Any], path: str | Path = CONFIG_NAME) -> None:
    """Raise CheckpointError (naming ``path`` and the key) for a config that is not a plain LoRA."""
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        hint = " (a tn_peft adapter? use `tn-peft export-lora` or tn_peft.convert.to_lora)" if "graph" in config else ""
        raise CheckpointError(f"{path}: key 'peft_type' is {peft_type!r}, not 'LORA'; only LoRA checkpoints convert{hint}")
    for key, why in UNSUPPORTED.items():
        if config.get(key):
            raise CheckpointError(f"{path}: key {key!r} = {config[key]!r} is not supported: {why}; "
                                  f"no exact canonical form exists for it")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(BASE_MODIFYING_INITS):
        raise CheckpointError(
            f"{path}: key 'init_lora_weights' = {init!r} rewrites the base model's weights, so this dW applies to a "
            f"residual model, not the original; save it with peft's path_initial_model_for_weight_conversion first")
    bias = config.get("bias", "none")
    if bias not in (None, "none"):
        raise CheckpointError(f"{path}: key 'bias' = {bias!r}: trained biases are not part of dW; "
                              f"retrain with bias='none' or list the modules in modules_to_save")
    for key in ("r", "lora_alpha"):
        value = config.get(key, 8)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise CheckpointError(f"{path}: key {key!r} = {value!r} is not a positive number")
    for key in ("rank_pattern", "alpha_pattern"):
        value = config.get(key) or {}
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: key {key!r} must map module patterns to numbers, got {value!r}")
        for pattern in value:  # matched as peft's get_pattern_key does (config.pattern_key)
            try:
                check_pattern(f"key {key!r}: pattern", pattern, rf"(.*\.)?({pattern})$")
            except SpecError as exc:
                raise CheckpointError(f"{path}: {exc}") from None
    for key in ("modules_to_save", "target_modules"):
        value = config.get(key)
        if value is not None and not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise CheckpointError(f"{path}: key {key!r} must be a list of module names, got {value!r}")


def read_tensors(directory: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights file of a checkpoint folder (safetensors, or a legacy ``.bin``) as a dict of tensors."""
    directory = Path(directory)
    path = directory / WEIGHTS_NAME
    if path.is_file():
        return path, load_safetensors(path)
    legacy = directory / LEGACY_WEIGHTS_NAME
    if legacy.is_file():
        try:
            tensors = torch.load(legacy, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt file
            raise CheckpointError(f"{legacy}: cannot be read ({type(exc).__name__}: {exc})") from None
        return legacy, dict(tensors)
    raise CheckpointError(f"{path}: missing (the folder has no {WEIGHTS_NAME} or {LEGACY_WEIGHTS_NAME})")


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a truncated or corrupt file is a CheckpointError naming file and key."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt header: {exc})") from None
    tensors: dict[str, torch.Tensor] = {}
    with handle as f:
        for key in f.keys():  # noqa: SIM118 - safe_open handles are not mappings
            try:
                tensors[key] = f.get_tensor(key)
            except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{path}: key {key!r} cannot be read (truncated or corrupt data: {exc})") from None
    return tensors


def read_lora(directory: str | Path) -> LoraCheckpoint:
    """Read a PEFT LoRA checkpoint folder into a :class:`LoraCheckpoint` (input files are only read).

    Module names are relative to the base model (peft's ``base_model.model.`` prefix removed), e.g.
    ``bert.encoder.layer.0.attention.self.query``.
    """
    directory = Path(directory)
    config = read_config(directory)
    path, tensors = read_tensors(directory)
    factors: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    extra: dict[str, torch.Tensor] = {}
    modules_to_save = list(config.get("modules_to_save") or [])
    for key, tensor in tensors.items():
        name = key.removeprefix(PREFIX)
        match = _KEY.match(name)
        if match:
            if tensor.ndim != 2:
                raise CheckpointError(f"{path}: key {key!r} has shape {tuple(tensor.shape)}; only LoRA on linear "
                                      f"layers (2-D factors) converts, not convolutions")
            factors.setdefault(match["module"], {})[match["which"]] = (key, tensor)
        elif "lora_embedding_" in name:
            raise CheckpointError(f"{path}: key {key!r} is LoRA on an embedding layer, which tn_peft does not adapt; "
                                  f"retrain without the embedding in target_modules")
        elif "lora_magnitude_vector" in name:
            raise CheckpointError(f"{path}: key {key!r} is a DoRA magnitude; DoRA does not convert exactly")
        elif any(re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", name) for m in modules_to_save):
            extra[name] = tensor
        else:
            raise CheckpointError(f"{path}: key {key!r} is neither a LoRA factor (lora_A/lora_B) nor in "
                                  f"modules_to_save {modules_to_save}")
    if not factors:
        raise CheckpointError(f"{path}: no LoRA factors (keys ending in lora_A.weight / lora_B.weight)")
    layers: dict[str, LoraLayer] = {}
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    for module, pair in factors.items():
        for which in ("A", "B"):
            if which not in pair:
                other = pair["B" if which == "A" else "A"][0]
                raise CheckpointError(f"{path}: key {other!r} has no matching lora_{which}.weight")
        (key_a, A), (key_b, B) = pair["A"], pair["B"]
        if A.shape[0] != B.shape[1]:
            raise CheckpointError(f"{path}: key {key_a!r} has rank {A.shape[0]} but {key_b!r} has rank {B.shape[1]}")
        r_key = pattern_key(rank_pattern, module)
        expected_r = rank_pattern[r_key] if r_key is not None else config.get("r", 8)
        if int(expected_r) != A.shape[0]:
            origin = f"rank_pattern[{r_key!r}]" if r_key is not None else "r"
            raise CheckpointError(f"{path}: key {key_a!r} has rank {A.shape[0]}, but {CONFIG_NAME} says "
                                  f"{origin} = {expected_r}")
        a_key = pattern_key(alpha_pattern, module)
        alpha = alpha_pattern[a_key] if a_key is not None else config.get("lora_alpha", 8)
        layers[module] = LoraLayer(module, A, B, float(alpha), bool(config.get("use_rslora", False)))
    return LoraCheckpoint(directory, dict(config), dict(sorted(layers.items())), extra)


def lora_config(layers: Mapping[str, tuple[int, float]], *, base_model_name_or_path: str | None = None,
                fan_in_fan_out: bool = False, modules_to_save: list[str] | None = None,
                task_type: str | None = None) -> dict[str, Any]:
    """A PEFT ``adapter_config.json`` for layers ``name -> (rank, alpha)``.

    The most common (rank, alpha) becomes ``r``/``lora_alpha``; every other layer goes to
    ``rank_pattern``/``alpha_pattern`` under its full module name (regex-escaped, so it matches that
    module only, by peft's ``(.*\\.)?(key)$`` rule).
    """
    from collections import Counter

    ranks = Counter(r for r, _ in layers.values())
    alphas = Counter(a for _, a in layers.values())
    r = ranks.most_common(1)[0][0] if ranks else 8
    alpha = alphas.most_common(1)[0][0] if alphas else 8
    rank_pattern = {re.escape(name): int(rk) for name, (rk, _) in layers.items() if rk != r}
    alpha_pattern = {re.escape(name): _number(a) for name, (_, a) in layers.items() if a != alpha}
    return {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "r": int(r),
        "lora_alpha": _number(alpha),
        "target_modules": sorted(layers),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": bool(fan_in_fan_out),
        "bias": "none",
        "lora_dropout": 0.0,
        "init_lora_weights": True,
        "modules_to_save": list(modules_to_save) if modules_to_save else None,
        "inference_mode": True,
    }


def lora_tensors(factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                 extra: Mapping[str, torch.Tensor] | None = None, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """PEFT's saved keys: ``base_model.model.<module>.lora_A.weight`` (r, in) and ``...lora_B.weight`` (out, r)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, (B, A) in factors.items():
        tensors[f"{PREFIX}{name}.lora_A.weight"] = A.to(dtype).contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = B.to(dtype).contiguous()
    for name, tensor in (extra or {}).items():
        tensors[f"{PREFIX}{name}"] = tensor.contiguous()
    return tensors


def write_lora(directory: str | Path, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``directory`` (each file atomically)."""
    from safetensors.torch import save

    from ..io.atomic import atomic_write_bytes, atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS_NAME, save(dict(tensors), metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(dict(config), indent=2, sort_keys=True) + "\n")
    return directory


def _number(value: float) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() else value
