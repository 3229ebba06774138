"""The adapter checkpoint format: two files per adapter, like Hugging Face PEFT.

A directory holds ``adapter_model.safetensors`` and ``adapter_config.json``; adapters other than
``default`` go in a subfolder named after the adapter (``<dir>/<name>/``), as PEFT does.

``adapter_config.json`` (see :func:`make_config`) has ``peft_type: "TN_PEFT"``, ``tn_peft_version``,
``graph`` (the full ``Network.to_spec()``, graph_args and alpha already applied), ``graph_args``,
``target_modules``, ``exclude_modules``, ``modules_to_save``, ``alpha``, ``dropout``,
``base_model_name_or_path``, ``inference_mode`` and ``targets`` (module name ->
``{"type": "linear"|"conv1d"|"conv2d", "shape": [out, in]}``, plus ``"graph"``: the layer's own full
spec when ``layer_graph_args`` gave it a graph other than ``graph``). ``layer_graph_args``,
``layers_to_transform`` and ``layers_pattern`` are saved as well (after the fields above).

Tensor names in ``adapter_model.safetensors`` are plain (never parametrization state), each a
node's raw parameters (see :func:`node_keys`):

- ``base_model.model.<module path>.tn_<node>`` for a node whose state is one tensor (dense ``weight``,
  diagonal ``values``);
- ``base_model.model.<module path>.tn_<node>.<param>`` for a node whose state is several tensors
  (e.g. a Pauli node's ``initial`` and ``weights``);
- ``base_model.model.<module path>.tn_initial_<node>``: theta_0's tensor of ``delta`` networks (QuanTA);
- ``base_model.model.tn_shared.<out>x<in>.<node>`` (``.<param>`` as above): a node the spec marks
  ``shared`` (LoTR), stored once per layer shape;
- ``base_model.model.<module path>.<param>``: a ``modules_to_save`` module's own state, under its
  ordinary names.

The parameters their nodes train quantized (the ``bits`` option, :mod:`tn_peft.nodes.quantize`) are
stored together under two keys instead of their own: ``base_model.model.tn_quantized.codes`` (uint8:
each tensor's packed codes, byte-aligned, in the order of the sorted keys) and
``base_model.model.tn_quantized.scales`` (float32: one step per tensor) (:func:`pack_quantized`,
:func:`encode_tensors`, :func:`decode_tensors`). Files saved before hold one ``<key>.codes`` /
``<key>.scale`` pair per tensor; they still load.

The low-level functions here read and write those files and nothing else, so other code (LoRA
conversion) can produce a checkpoint from plain tensors::

    save_adapter_files(directory, config_dict, {"base_model.model.fc.tn_s": torch.zeros(4), ...})
    config_dict, tensors = load_adapter_files(directory)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .atomic import atomic_write, atomic_write_text

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_TYPE = "TN_PEFT"
PREFIX = "base_model.model."
#: the two keys that hold every quantized tensor of an adapter (:func:`pack_quantized`)
QUANTIZED_CODES = PREFIX + "tn_quantized.codes"
QUANTIZED_SCALES = PREFIX + "tn_quantized.scales"
SHARED_PREFIX = PREFIX + "tn_shared."
#: Fields every adapter_config.json carries.
CONFIG_FIELDS = ("peft_type", "tn_peft_version", "graph", "graph_args", "target_modules", "exclude_modules",
                 "modules_to_save", "alpha", "dropout", "base_model_name_or_path", "inference_mode", "targets")


def shape_key(out_features: int, in_features: int) -> str:
    """``"<out>x<in>"``: how a layer shape is named in keys (``tn_shared.<out>x<in>.<node>``).

    >>> shape_key(768, 384)
    '768x384'
    """
    return f"{out_features}x{in_features}"


@dataclass(frozen=True)
class SavedTarget:
    """One ``targets`` entry of ``adapter_config.json``, checked: the layer's dW shape and, when
    ``layer_graph_args`` gave it its own graph, that graph's spec."""

    out_features: int
    in_features: int
    graph: dict[str, Any] | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_features, self.in_features


def saved_shape(info: Any, name: str, path: str | Path) -> tuple[int, int]:
    """``(out_features, in_features)`` of saved target ``name`` (its ``targets`` entry ``info`` in the
    ``adapter_config.json`` at ``path``); CheckpointError naming the key when the entry is malformed.
    The one parser of a saved shape: two positive integers (an integral float such as ``4.0`` too).

    >>> saved_shape({"shape": [4, 8.0]}, "fc", "adapter_config.json")
    (4, 8)
    """
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: key 'targets.{name}' must be an object with a 'shape', got {info!r}")
    shape = info.get("shape")
    if (not isinstance(shape, (list, tuple)) or len(shape) != 2
            or not all(((isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()))
                       and v >= 1 for v in shape)):
        raise CheckpointError(f"{path}: key 'targets.{name}.shape' must be [out, in] (two positive integers), "
                              f"got {shape!r}")
    return int(shape[0]), int(shape[1])


def saved_targets(config: Mapping[str, Any], path: str | Path) -> dict[str, SavedTarget]:
    """Module name -> :class:`SavedTarget` for every ``targets`` entry of a config read by
    :func:`read_adapter_config` (at ``path``); CheckpointError naming the key of a malformed entry."""
    out = {}
    for name, info in config["targets"].items():
        out_features, in_features = saved_shape(info, name, path)
        graph = info.get("graph")
        if graph is not None and not isinstance(graph, dict):
            raise CheckpointError(f"{path}: key 'targets.{name}.graph' must be a graph spec (an object), "
                                  f"got {type(graph).__name__}")
        out[name] = SavedTarget(out_features, in_features, graph)
    return out


def adapter_directory(directory: str | Path, adapter_name: str = "default") -> Path:
    """Where adapter ``adapter_name``'s files live: ``directory`` itself for ``default``, else a subfolder
    (one path component: a name never leads out of ``directory``)."""
    directory = Path(directory)
    return directory if adapter_name == "default" else directory / folder_name(adapter_name)


def folder_name(adapter_name: str) -> str:
    """``adapter_name`` if it can name a subfolder: one path component, not ``.`` or ``..``, no NUL."""
    if (not isinstance(adapter_name, str) or not adapter_name or adapter_name in (".", "..")
            or any(c in adapter_name for c in "/\\\x00") or len(adapter_name) > 255):
        raise CheckpointError(f"the adapter name {adapter_name!r} cannot name a subfolder: it holds '/', '\\' or "
                              "NUL, is '.' or '..', or is over 255 characters, and would lead out of the adapter "
                              "folder. Fix: name adapters like 'task_a'")
    return adapter_name


def make_config(adapter_config: Mapping[str, Any], graph_spec: Mapping[str, Any],
                targets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The adapter_config.json dict from an :class:`~tn_peft.model.config.AdapterConfig` dict, the built graph's spec and targets."""
    from .. import __version__

    config = {"peft_type": PEFT_TYPE, "tn_peft_version": __version__}
    config.update({k: v for k, v in adapter_config.items() if k != "graph"})
    config["graph"] = dict(graph_spec)
    config["targets"] = {name: dict(info) for name, info in targets.items()}
    return {k: config.get(k) for k in CONFIG_FIELDS} | {k: v for k, v in config.items() if k not in CONFIG_FIELDS}


def node_keys(prefix: str, node_name: str, state: Mapping[str, torch.Tensor], marker: str = "tn_") -> dict[str, str]:
    """Checkpoint key for each entry of a node's ``state_dict()``.

    One entry -> ``<prefix><marker><node>``; several -> ``<prefix><marker><node>.<param>``. Layer nodes
    use the marker ``tn_``; shared nodes (under ``tn_shared.<out>x<in>.``) use none.

    >>> node_keys("base_model.model.fc.", "B", {"weight": torch.zeros(2)})
    {'weight': 'base_model.model.fc.tn_B'}
    """
    if len(state) == 1:
        return {next(iter(state)): f"{prefix}{marker}{node_name}"}
    return {key: f"{prefix}{marker}{node_name}.{key}" for key in state}


def layer_keys(module_name: str, adapter) -> dict[str, tuple[str, torch.Tensor]]:
    """Checkpoint key -> (the adapter's state_dict key, live tensor) of one layer's own (non-shared) state:
    nodes under ``<PREFIX><module>.tn_<node>[.<param>]``, other buffers under ``<PREFIX><module>.tn_<key>``."""
    prefix = f"{PREFIX}{module_name}."
    keys: dict[str, tuple[str, torch.Tensor]] = {}

    def put(full: str, entry: tuple[str, torch.Tensor]) -> None:
        if full in keys:
            raise CheckpointError(f"layer {module_name!r}: {keys[full][0]!r} and {entry[0]!r} both map to checkpoint "
                                  f"key {full!r}; rename the graph's nodes so that no name is another's 'initial_' form")
        keys[full] = entry

    by_node: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, tensor in adapter.state_dict(keep_vars=True).items():
        if key.startswith("nodes."):
            node, _, rest = key[len("nodes."):].partition(".")
            by_node.setdefault(node, {})[rest] = (key, tensor)
        else:
            put(f"{prefix}tn_{key}", (key, tensor))
    for node, state in by_node.items():
        for rest, full in node_keys(prefix, node, state).items():
            put(full, state[rest])
    return keys


def state_quantizers(module) -> dict[str, Any]:
    """``module.state_dict()`` key -> :class:`~tn_peft.nodes.quantize.Quantizer` of every quantized parameter in it."""
    return {f"{path}.{param}" if path else param: quantizer
            for path, sub in module.named_modules() for param, quantizer in getattr(sub, "quantizers", {}).items()}


def layer_quantizers(module_name: str, adapter) -> dict[str, Any]:
    """Checkpoint key -> quantizer for one layer's quantized parameters (keys as :func:`layer_keys`)."""
    quantizers = state_quantizers(adapter)
    return {full: quantizers[key] for full, (key, _) in layer_keys(module_name, adapter).items() if key in quantizers}


def shared_quantizers(shape_key: str, nodes: Mapping[str, Any]) -> dict[str, Any]:
    """Checkpoint key -> quantizer for the quantized parameters of shared nodes (keys as :func:`shared_keys`)."""
    out = {}
    for node_name, node in nodes.items():
        quantizers = state_quantizers(node)
        for rest, full in node_keys(f"{SHARED_PREFIX}{shape_key}.", node_name, node.state_dict(), marker="").items():
            if rest in quantizers:
                out[full] = quantizers[rest]
    return out


def encode_tensors(tensors: Mapping[str, torch.Tensor], quantizers: Mapping[str, Any],
                   order: Callable[[str], str] | None = None) -> dict[str, torch.Tensor]:
    """The file's tensors: the full-precision ones under their keys, every quantized one packed into the two
    keys :data:`QUANTIZED_CODES` and :data:`QUANTIZED_SCALES` (:func:`pack_quantized`)."""
    from ..nodes.quantize import encode

    out = {key: tensor for key, tensor in tensors.items() if key not in quantizers}
    pairs = {key: encode(tensor, quantizers[key]) for key, tensor in tensors.items() if key in quantizers}
    return out | pack_quantized(pairs, order) if pairs else out


def pack_quantized(pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   order: Callable[[str], str] | None = None) -> dict[str, torch.Tensor]:
    """Every quantized tensor's ``(packed codes, step)`` under two keys: :data:`QUANTIZED_CODES` (uint8, each
    tensor's packed codes byte-aligned one after another) and :data:`QUANTIZED_SCALES` (float32, one step
    per tensor), in the order of the tensors' keys sorted (by ``order(key)``, default the key itself).
    The layout follows from the graph, so the file needs no per-tensor names: 120 key names made a 4-bit
    file larger than its float32 form; two make it smaller at every bit width."""
    keys = sorted(pairs, key=order)
    return {QUANTIZED_CODES: torch.cat([pairs[k][0].reshape(-1) for k in keys]),
            QUANTIZED_SCALES: torch.stack([pairs[k][1].reshape(()).to(torch.float32) for k in keys])}


def unpack_quantized(path: str | Path, tensors: Mapping[str, torch.Tensor], quantizers: Mapping[str, Any],
                     shapes: Mapping[str, Any], order: Callable[[str], str] | None = None) -> dict[str, torch.Tensor]:
    """``tensors`` with :func:`pack_quantized`'s two keys split back into each quantized key's ``<key>.codes``
    / ``<key>.scale`` pair (the per-key layout of files saved before, which :func:`decode_key` reads);
    a file without the two keys is returned as it is. CheckpointError naming ``path`` when the packed
    sizes are not what the graph's quantized tensors (``quantizers``, ``shapes``) take."""
    import math

    from ..nodes.quantize import CODES, SCALE, packed_size

    if QUANTIZED_CODES not in tensors and QUANTIZED_SCALES not in tensors:
        return dict(tensors)
    for key in (QUANTIZED_CODES, QUANTIZED_SCALES):
        if key not in tensors:
            raise CheckpointError(f"{path}: key {key!r} is missing beside its pair; the file is damaged")
    codes, scales = tensors[QUANTIZED_CODES], tensors[QUANTIZED_SCALES]
    keys = sorted(quantizers, key=order)
    sizes = [packed_size(math.prod(shapes[k]), quantizers[k].bits) for k in keys]
    if codes.dtype != torch.uint8 or codes.dim() != 1 or codes.numel() != sum(sizes) or scales.dim() != 1 \
            or scales.numel() != len(keys):
        raise CheckpointError(f"{path}: {QUANTIZED_CODES!r} holds {codes.numel()} {codes.dtype} values and "
                              f"{QUANTIZED_SCALES!r} {scales.numel()}; the graph's {len(keys)} quantized tensors need "
                              f"{sum(sizes)} uint8 bytes and {len(keys)} steps: the checkpoint was saved with other "
                              "bits or another graph")
    out = {k: v for k, v in tensors.items() if k not in (QUANTIZED_CODES, QUANTIZED_SCALES)}
    offset = 0
    for i, (key, size) in enumerate(zip(keys, sizes)):
        out[key + CODES], out[key + SCALE] = codes[offset:offset + size], scales[i]
        offset += size
    return out


def is_packed_per_key(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether a file stores its quantized tensors one ``.codes`` / ``.scale`` pair per key (saved before
    :func:`pack_quantized`; still read)."""
    from ..nodes.quantize import CODES

    return QUANTIZED_CODES not in tensors and any(k.endswith(CODES) for k in tensors)


def file_shapes(shapes: Mapping[str, Any], quantizers: Mapping[str, Any], *, per_key: bool = False) -> dict[str, tuple]:
    """The file's key -> shape for live ``shapes`` (key -> shape) with ``quantizers``: the quantized ones
    packed under two keys (:func:`pack_quantized`), or with ``per_key`` one pair each (older files)."""
    import math

    from ..nodes.quantize import CODES, SCALE, packed_size

    out: dict[str, tuple] = {}
    packed = []
    for key, shape in shapes.items():
        if key in quantizers:
            size = packed_size(math.prod(shape), quantizers[key].bits)
            if per_key:
                out[key + CODES], out[key + SCALE] = (size,), ()
            else:
                packed.append(size)
        else:
            out[key] = tuple(shape)
    if packed:
        out[QUANTIZED_CODES], out[QUANTIZED_SCALES] = (sum(packed),), (len(packed),)
    return out


def decode_key(path: str | Path, tensors: Mapping[str, torch.Tensor], key: str, quantizer: Any,
               shape: Any) -> torch.Tensor:
    """Quantized ``key`` decoded from the file's ``<key>.codes`` / ``<key>.scale`` (a CheckpointError naming
    ``path`` and the key for a missing or malformed pair)."""
    from ..nodes.quantize import CODES, SCALE, decode

    for part in (CODES, SCALE):
        if key + part not in tensors:
            plain = " (it holds the full-precision tensor: saved without bits)" if key in tensors else ""
            raise CheckpointError(f"{path}: missing key {key + part!r}{plain}; the graph trains it with "
                                  f"{quantizer.bits} bits")
    return decode(tensors[key + CODES], tensors[key + SCALE], quantizer, tuple(shape), key=key, path=str(path))


def decode_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], quantizers: Mapping[str, Any],
                   shapes: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The file's tensors with each quantized pair decoded back to its key (:func:`decode_key`)."""
    from ..nodes.quantize import CODES, SCALE

    tensors = unpack_quantized(path, tensors, quantizers, shapes)
    pairs = {key + part for key in quantizers for part in (CODES, SCALE)}
    out = {k: v for k, v in tensors.items() if k not in pairs}
    for key, quantizer in quantizers.items():
        out[key] = decode_key(path, tensors, key, quantizer, shapes[key])
    return out


def shared_keys(shape_key: str, nodes: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Checkpoint key -> live tensor of the shared nodes (name -> module) of the layers whose shape key is
    ``shape_key`` (``"<out>x<in>"``): ``base_model.model.tn_shared.<out>x<in>.<node>[.<param>]``."""
    keys = {}
    for node_name, node in nodes.items():
        state = node.state_dict(keep_vars=True)
        for rest, full in node_keys(f"{SHARED_PREFIX}{shape_key}.", node_name, state, marker="").items():
            keys[full] = state[rest]
    return keys


def save_adapter_files(directory: str | Path, config: Mapping[str, Any],
                       tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write ``adapter_model.safetensors`` then ``adapter_config.json`` into ``directory``, each atomically.

    The weights go first, so a crash leaves either the previous pair's config or the new one, never a new
    config beside missing weights. Tensors are saved contiguous on the CPU. Returns the directory.
    Raises CheckpointError for a config that is not JSON-serializable or a tensor that is not a tensor.
    """
    from safetensors.torch import save_file

    from .. import __version__

    directory = Path(directory)
    try:
        text = json.dumps(dict(config), indent=2, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory / CONFIG_NAME}: the config is not JSON-serializable ({exc})") from None
    plain: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{directory / WEIGHTS_NAME}: key {key!r} holds a {type(tensor).__name__}, not a tensor")
        plain[key] = tensor.detach().to("cpu").contiguous().clone()
    metadata = {"format": "pt", "peft_type": PEFT_TYPE, "tn_peft_version": __version__}
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(plain, str(tmp), metadata=metadata))
    atomic_write_text(directory / CONFIG_NAME, text + "\n")
    return directory


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    """Read and check ``adapter_config.json``; CheckpointError naming the file for a missing/corrupt/foreign one."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (is {Path(directory)} a tn_peft adapter directory?)")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: holds a {type(config).__name__}, not a JSON object")
    if config.get("peft_type") != PEFT_TYPE:
        raise CheckpointError(f"{path}: key 'peft_type' is {config.get('peft_type')!r}, not {PEFT_TYPE!r} "
                              f"(a LoRA checkpoint from PEFT needs converting first)")
    if "graph_spec" in config and "targets" not in config:
        raise CheckpointError(f"{path}: this adapter was saved through peft's front door (get_peft_model with a "
                              "TnPeftConfig), which tn_peft.get_model's readers do not take; load it with "
                              "peft.PeftModel.from_pretrained after `import tn_peft`, and export it to LoRA with "
                              "peft.convert_to_lora(model, rank=k)")
    for key in ("graph", "targets"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{path}: key {key!r} is missing or not an object")
    return config


def read_adapter_tensors(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read ``adapter_model.safetensors``; CheckpointError naming the file when missing, truncated or corrupt."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def check_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                  expected_shapes: Mapping[str, Any]) -> None:
    """CheckpointError naming the file and key for a missing, unexpected or wrongly shaped tensor."""
    from ..nodes.quantize import CODES, SCALE

    def bits_hint(key: str, file_keys: Any, model_keys: Any) -> str:
        if QUANTIZED_CODES in file_keys and QUANTIZED_CODES not in model_keys:
            return " (it was saved quantized, and the graph does not quantize it)"
        if QUANTIZED_CODES in model_keys and QUANTIZED_CODES not in file_keys and not any(
                k.endswith(CODES) for k in file_keys):
            return (" (the file holds the graph's quantized tensors in full precision: saved without bits, and the "
                    "graph quantizes them)")
        base = key.removesuffix(CODES).removesuffix(SCALE)
        if base != key and (base in file_keys or base in model_keys):
            if base in file_keys:
                return f" (it holds {base!r} in full precision: saved without bits, and the graph quantizes it)"
            return f" ({base!r} was saved quantized, and the graph does not quantize it)"
        if key + CODES in file_keys:
            return f" ({key!r} was saved quantized, and the graph does not quantize it)"
        if key + CODES in model_keys:
            return f" (it holds {key!r} in full precision: saved without bits, and the graph quantizes it)"
        return ""

    missing = [k for k in expected_shapes if k not in tensors]
    if missing:
        raise CheckpointError(f"{path}: missing key {missing[0]!r}{bits_hint(missing[0], tensors, expected_shapes)}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                              + "; the checkpoint was saved from a different adapter or graph")
    extra = [k for k in tensors if k not in expected_shapes]
    if extra:
        raise CheckpointError(f"{path}: unexpected key {extra[0]!r}{bits_hint(extra[0], tensors, expected_shapes)}"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                              + "; the checkpoint was saved from a different adapter, graph or model")
    for key, shape in expected_shapes.items():
        if tuple(tensors[key].shape) != tuple(shape):
            raise CheckpointError(f"{path}: key {key!r} has shape {tuple(tensors[key].shape)}, "
                                  f"the model expects {tuple(shape)}")



def load_adapter_files(directory: str | Path, expected_shapes: Mapping[str, Any] | None = None, *,
                       device: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(config_dict, tensors)`` from an adapter directory.

    With ``expected_shapes`` (key -> shape), also checks that exactly those keys are present with
    those shapes. Raises CheckpointError naming the file (and key) for every fault.
    """
    config = read_adapter_config(directory)
    tensors = read_adapter_tensors(directory, device=device)
    if expected_shapes is not None:
        check_tensors(Path(directory) / WEIGHTS_NAME, tensors, expected_shapes)
    return config, tensors
