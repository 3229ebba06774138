"""Adapter banks: many saved adapters of one config in one model, as stacked tensors, for mixed batches.

``model.load_adapters(folders)`` (a list of adapter folders, or a glob pattern) reads every folder's
``adapter_config.json`` and weights, checks them all, and only then adds them: **all or none** -- a
missing, corrupt or mismatched folder raises one :class:`~tn_peft.errors.CheckpointError` naming that
folder, and the model is left as it was. Folders with the same config (graph, options, targets) form one
:class:`AdapterBank`: per target layer one *template* adapter (one network, one plan per layer shape:
the planner's families are shared by every member) and, for each of its tensors, one stacked tensor
``(members, *shape)``; member ``i``'s node tensors are the template's nodes evaluated on row ``i`` of
those stacks. A member is no module, so N adapters cost N rows of a few kilobytes, not N x layers x
nodes modules (each ~350 KB resident with its Python objects, against ~3 KB of Quantum-PEFT angles).

Bank members serve mixed batches (``adapter_names=``, in ``forward`` and ``generate``), in inference
(their node tensors come from the model's inference cache, :mod:`tn_peft.model.serving`); for
training, ``set_adapter``, merging or saving, load an adapter with ``load_adapter``.
"""

from __future__ import annotations

import glob as globbing
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..adapter.cache import factor_form
from ..errors import CheckpointError, SpecError, UsageError, spec_source
from ..io import checkpoint as ckpt

#: config keys that do not change what a member computes (they may differ inside one bank)
_VOLATILE = ("base_model_name_or_path", "inference_mode", "revision")


def expand_folders(folders: str | Path | Sequence[str | Path]) -> list[Path]:
    """The adapter folders ``folders`` names: a list of folders, or one folder or glob pattern (sorted matches)."""
    if isinstance(folders, (str, Path)):
        text = str(folders)
        if any(ch in text for ch in "*?["):
            found = sorted(Path(p) for p in globbing.glob(text) if Path(p).is_dir())
            if not found:
                raise UsageError(f"load_adapters: the pattern {text!r} matches no folder",
                                fix="give a glob that matches adapter folders, e.g. 'adapters/*', or a list of folders")
            return found
        return [Path(text)]
    paths = [Path(p) for p in folders]
    if not paths:
        raise UsageError("load_adapters got an empty list of folders", fix="give at least one adapter folder")
    return paths


def _canonical(saved: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in saved.items() if k not in _VOLATILE}, sort_keys=True, default=str)


class AdapterBank(nn.Module):
    """Adapters of one config stacked: per target layer a template adapter and ``(members, ...)`` tensors.

    ``names``: the members in row order. The stacks are buffers (they move with ``model.to``)."""

    def __init__(self, names: list[str], templates: dict[str, nn.Module], layers: dict[str, nn.Module],
                 stacks: dict[str, dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.names = list(names)
        self.row = {name: i for i, name in enumerate(self.names)}
        self.templates = nn.ModuleDict({f"t{i}": t for i, t in enumerate(templates.values())})
        self.module_names = list(templates)
        self._layers = [layers[m] for m in self.module_names]
        self._keys: list[list[tuple[str, str]]] = []   # per template: (template state key, buffer name)
        for i, module_name in enumerate(self.module_names):
            keys = []
            for j, (key, stack) in enumerate(stacks[module_name].items()):
                buffer = f"s{i}_{j}"
                self.register_buffer(buffer, stack)
                keys.append((key, buffer))
            self._keys.append(keys)
        for p in self.templates.parameters():
            p.requires_grad_(False)
        self._forms = [factor_form(t.network) if _linear(layers[m]) else None
                       for m, t in zip(self.module_names, self.templates.values())]

    def layers(self) -> list[tuple[nn.Module, nn.Module, tuple | None]]:
        """``(wrapped layer, template adapter, two-factor form or None)`` per target layer."""
        return list(zip(self._layers, self.templates.values(), self._forms))

    def stamp_tensors(self) -> list[torch.Tensor]:
        return list(self.buffers(recurse=False))

    def evaluate(self, names: Sequence[str]) -> list[list[tuple[tuple, list[torch.Tensor]]]]:
        """For each member in ``names``: per layer, ``((layer, template, form), its node tensors)`` (no gradients)."""
        rows = [self.row[name] for name in names]
        out: list[list] = [[] for _ in rows]
        for item, keys in zip(self.layers(), self._keys):
            stacks = {key: getattr(self, buffer) for key, buffer in keys}
            with torch.no_grad():
                for i, tensors in enumerate(_member_tensors(item[1], stacks, rows)):
                    out[i].append((item, tensors))
        return out

    def memory(self) -> dict[str, Any]:
        """Bytes the stacks hold in all and per member, and the templates' bytes (once per bank)."""
        stacked = sum(b.numel() * b.element_size() for b in self.buffers(recurse=False))
        templates = sum(t.numel() * t.element_size() for t in self.templates.state_dict().values())
        return {"members": len(self.names), "stacked_bytes": stacked, "template_bytes": templates,
                "bytes_per_member": stacked / max(len(self.names), 1)}


class _NodeTensors(nn.Module):
    """``adapter.node_tensors()`` as a module's forward (for ``torch.func.functional_call``)."""

    def __init__(self, adapter: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self) -> tuple[torch.Tensor, ...]:
        return tuple(self.adapter.node_tensors())


def _member_tensors(template: nn.Module, stacks: dict[str, torch.Tensor], rows: list[int]) -> list[list[torch.Tensor]]:
    """The template's node tensors evaluated on rows ``rows`` of ``stacks`` (its state key -> stacked tensor): all
    rows in one ``torch.func.vmap`` call; one row at a time where a node kind cannot be vmapped."""
    index = torch.tensor(rows, device=next(iter(stacks.values())).device)
    picked = {f"adapter.{key}": stack.index_select(0, index) for key, stack in stacks.items()}
    wrapper = _NodeTensors(template)
    try:
        batched = torch.func.vmap(lambda params: torch.func.functional_call(wrapper, params, ()))(picked)
        return [[t[i] for t in batched] for i in range(len(rows))]
    except Exception:  # noqa: BLE001 - a node kind with ops vmap lacks: evaluate row by row instead
        live = template.state_dict(keep_vars=True)
        out = []
        for i in range(len(rows)):
            for key, stack in picked.items():
                live[key.removeprefix("adapter.")].copy_(stack[i])
            out.append([t.clone() for t in template.node_tensors()])
        return out


def _linear(layer: nn.Module) -> bool:
    from .serving import _linear_output

    return _linear_output(layer)


def _wrap_error(folder: Path, name: str, position: int, total: int, err: Exception) -> CheckpointError:
    return CheckpointError(f"load_adapters: folder {folder} (adapter {name!r}, {position + 1} of {total}): {err}; "
                           "nothing was loaded (load_adapters adds all the folders or none)")


def load_adapters(model, folders: str | Path | Sequence[str | Path], names: Sequence[str] | None = None
                  ) -> list[str]:
    """Load many adapter folders into ``model`` as banks (one per distinct config), all or none; returns the names.

    ``names``: one per folder (default: each folder's name)."""
    from .config import AdapterConfig
    from .model import _build_adapter
    from .model_io import check_saved_targets, saved_layer_specs
    from .targets import resolve_config

    paths = expand_folders(folders)
    names = [p.name for p in paths] if names is None else list(names)
    if len(names) != len(paths):
        raise UsageError(f"load_adapters got {len(names)} names for {len(paths)} folders",
                         fix="give one name per folder")
    taken = set(model.peft_config) | set(model._bank_of)
    seen: set[str] = set()
    for name, path in zip(names, paths):
        if not name or "." in name or name == "__base__":
            raise UsageError(f"load_adapters: folder {path} gives the adapter name {name!r}, which must be non-empty "
                             "and contain no '.' (nor be '__base__')",
                             fix="pass names=[...] with one valid name per folder")
        if name in taken or name in seen:
            raise UsageError(f"load_adapters: an adapter named {name!r} (folder {path}) is already "
                             f"{'loaded' if name in taken else 'in this call'}",
                             fix="give each adapter its own name (names=[...])")
        seen.add(name)
    groups: dict[str, list[int]] = {}
    saved_of: list[dict[str, Any]] = []
    for i, path in enumerate(paths):
        try:
            saved = ckpt.read_adapter_config(path)
        except CheckpointError as err:
            raise _wrap_error(path, names[i], i, len(paths), err) from None
        saved_of.append(saved)
        groups.setdefault(_canonical(saved), []).append(i)
    built = []
    for members in groups.values():
        first = paths[members[0]]
        saved = saved_of[members[0]]
        try:
            with spec_source(str(first / ckpt.CONFIG_NAME)):
                config = AdapterConfig.from_dict(saved)
                targets = check_saved_targets(model.base_model, saved, first)
                resolved = resolve_config(config, model.base_model, targets=targets,
                                          layer_specs=saved_layer_specs(saved, first))
        except (CheckpointError, SpecError) as err:
            raise _wrap_error(first, names[members[0]], members[0], len(paths), err) from None
        if config.modules_to_save or any(spec.shared for spec in resolved.network.nodes):
            raise UsageError(f"load_adapters: folder {first} has modules_to_save or shared nodes (LoTR), which a bank "
                             "does not hold", fix="load such adapters one by one with load_adapter")
        templates = {name: _build_adapter(name, target, None) for name, target in resolved.targets.items()}
        live: dict[str, tuple[str, str, torch.Tensor]] = {}   # checkpoint key -> (module, state key, tensor)
        quantizers: dict[str, Any] = {}
        for module_name, template in templates.items():
            for full, (key, tensor) in ckpt.layer_keys(module_name, template).items():
                live[full] = (module_name, key, tensor)
            quantizers.update(ckpt.layer_quantizers(module_name, template))
        shapes = {full: tuple(t.shape) for full, (_, _, t) in live.items()}
        expected = ckpt.file_shapes(shapes, quantizers)
        stacks = {full: torch.empty((len(members), *t.shape), dtype=t.dtype, device=t.device)
                  for full, (_, _, t) in live.items()}
        for row, i in enumerate(members):
            try:
                if _canonical(saved_of[i]) != _canonical(saved):   # pragma: no cover - grouped by it
                    raise CheckpointError("config differs")
                _, tensors = ckpt.load_adapter_files(paths[i], expected)
                tensors = ckpt.decode_tensors(paths[i] / ckpt.WEIGHTS_NAME, tensors, quantizers, shapes)
            except CheckpointError as err:
                raise _wrap_error(paths[i], names[i], i, len(paths), err) from None
            for full, stack in stacks.items():
                stack[row].copy_(tensors[full].to(dtype=stack.dtype))
                if not torch.isfinite(stack[row]).all():
                    raise _wrap_error(paths[i], names[i], i, len(paths),
                                      CheckpointError(f"tensor {full!r} holds NaN or inf"))
        per_module = {m: {} for m in templates}
        for full, (module_name, key, _) in live.items():
            per_module[module_name][key] = stacks[full]
        built.append(([names[i] for i in members], resolved, templates, per_module))
    for member_names, resolved, templates, per_module in built:   # everything checked: now change the model
        layers = {name: model._wrap_target(name, target) for name, target in resolved.targets.items()}
        bank = AdapterBank(member_names, templates, layers, per_module)
        model.tn_banks[f"bank{len(model.tn_banks)}"] = bank
        for name in member_names:
            model._bank_of[name] = bank
    return names


__all__ = ["AdapterBank", "expand_folders", "load_adapters"]
