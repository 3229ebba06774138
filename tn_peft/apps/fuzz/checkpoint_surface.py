"""Fuzzing the checkpoint loaders: a tn_peft adapter folder (``from_pretrained``) and a peft LoRA folder
(``tn-peft convert``'s reader and converter), with mutated safetensors headers and bytes, truncated
files, structurally mutated ``adapter_config.json`` and code payloads planted in its strings (the embedded
graph spec's names included); a loaded adapter is run forward and backward."""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

from .mutate import mutate_bytes, mutate_structure, plant_payload
from .outcomes import Case

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"


def _base():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8))


def _make_folders(workdir: Path) -> dict[str, Path]:
    """A saved tn_peft adapter and a saved peft LoRA adapter on the same small model."""
    import tn_peft

    folders = {"tn_peft": workdir / "seed-tn", "lora": workdir / "seed-lora"}
    if not (folders["tn_peft"] / CONFIG).exists():
        model = tn_peft.get_model(_base(), tn_peft.AdapterConfig(graph="quantum_peft", target_modules=["0", "2"]))
        model.save_pretrained(str(folders["tn_peft"]))
    if not (folders["lora"] / CONFIG).exists():
        from ...errors import require

        peft = require("peft", "peft", "the checkpoint fuzz surface")
        lora = peft.get_peft_model(_base(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"]))
        lora.save_pretrained(str(folders["lora"]))
    return folders


def _mutate_header(data: bytes, rng: random.Random) -> bytes:
    """Mutate a safetensors file's 8-byte header length or its JSON header."""
    if len(data) < 8:
        return mutate_bytes(data, rng)
    (length,) = struct.unpack("<Q", data[:8])
    header, body = data[8:8 + length], data[8 + length:]
    roll = rng.random()
    if roll < 0.25:
        return struct.pack("<Q", rng.choice([0, 1, length - 1, length + 1, 2**63, rng.randrange(2**20)])) + data[8:]
    try:
        meta = json.loads(header)
        meta = mutate_structure(meta, rng, ("dtype", "shape", "data_offsets", "__metadata__"))
        new = json.dumps(meta, default=str).encode()
    except ValueError:
        new = mutate_bytes(header, rng)
    if roll < 0.5:
        new = mutate_bytes(new, rng)
    return struct.pack("<Q", len(new)) + new + body


def _load(kind: str, folder: Path, out: Path) -> None:
    import torch

    import tn_peft

    if kind == "tn_peft":
        model = tn_peft.from_pretrained(_base(), folder, is_trainable=True)
        model(torch.randn(2, 16)).sum().backward()
    else:
        from ...convert.from_lora import from_lora

        if out.exists():
            shutil.rmtree(out)
        from_lora(folder, out, "svd")


def make(workdir: str | Path):
    """The checkpoint surface: case i -> a mutated copy of one of the seed folders and the call that loads it."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folders = _make_folders(workdir)
    originals = {kind: {name: (folder / name).read_bytes() for name in (CONFIG, WEIGHTS)}
                 for kind, folder in folders.items()}

    def case(i: int) -> Case:
        rng = random.Random(i)
        kind = ("tn_peft", "lora")[i % 2]
        files = dict(originals[kind])
        mode = rng.randrange(5)
        if mode == 0:
            target, files[WEIGHTS] = WEIGHTS, _mutate_header(files[WEIGHTS], rng)
        elif mode == 1:
            target, files[WEIGHTS] = WEIGHTS, mutate_bytes(files[WEIGHTS], rng)
        elif mode == 2:
            config = json.loads(files[CONFIG])
            target = CONFIG
            files[CONFIG] = json.dumps(mutate_structure(config, rng, tuple(config)), default=str).encode()
        elif mode == 3:
            target, files[CONFIG] = CONFIG, mutate_bytes(files[CONFIG], rng)
        else:
            config, planted = plant_payload(json.loads(files[CONFIG]), rng)
            target, files[CONFIG] = CONFIG, json.dumps(config).encode()
        folder = workdir / "case"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        how = f"payload: {planted}" if mode == 4 else ("header", "bytes", "structure", "bytes")[mode]
        label = f"{kind} folder, {target} mutated ({how})"
        return Case(label, files[target], lambda: _load(kind, folder, workdir / "converted"),
                    ".safetensors" if target == WEIGHTS else ".json")

    def warm_up() -> None:
        for kind, folder in folders.items():
            _load(kind, folder, workdir / "converted")

    case.warm_up = warm_up
    return case
