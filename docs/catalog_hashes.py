"""Fingerprints of the catalog: every plan's decisions and generated source, and every checkpoint's bytes.

Run it before and after a refactor that must not change behaviour, and diff the two outputs:

    python docs/catalog_hashes.py > /tmp/before.txt   # ... refactor ...
    python docs/catalog_hashes.py > /tmp/after.txt && diff /tmp/before.txt /tmp/after.txt

One line per (graph and settings, layer shape, token count, grads): the sha256 of the plan's
source and of its decisions; then one line per graph for a saved adapter (``save_pretrained`` of a
two-layer model, seed 0, every tensor randomized): the sha256 of ``adapter_config.json`` and of
the weights file's content -- every tensor's name, dtype, shape and bytes, and the metadata, in
sorted order (safetensors writes its metadata in hash-map order, so the file's own bytes vary
between processes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import torch
from safetensors import safe_open
from torch import nn

import tn_peft

#: Catalog graphs with the settings the planner treats differently (hyperedges, circuits, delta, shared).
SETTINGS = [
    ("lora", {}), ("lora", {"rank": 16}), ("svd", {}), ("svd", {"map": "cayley"}), ("svd", {"map": "pauli"}),
    ("quantum_peft", {}), ("quantum_peft", {"layers": 3, "rank": 8}), ("tt", {"cores": 3}),
    ("ttd", {}), ("ttd", {"map": "pauli"}), ("kron", {}), ("quanta", {"axes": 3}), ("lotr", {}),
]
SHAPES = [(384, 384), (1024, 4096)]
TOKENS = [None, 1, 64, 4096]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_lines() -> list[str]:
    lines = []
    for name, args in SETTINGS:
        for n_in, n_out in SHAPES:
            adapter = tn_peft.load_graph(name, **args).build(n_in, n_out)
            for tokens in TOKENS:
                for train in (True, False):
                    plan = adapter.plan(tokens, train=train)
                    label = f"{name}{args} {n_out}x{n_in} T={tokens} train={train}"
                    lines.append(f"{label}: source {_digest(plan.source())} "
                                 f"decisions {_digest(chr(10).join(plan.decisions))}")
    return lines


def checkpoint_lines() -> list[str]:
    lines = []
    for name, args in SETTINGS:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(32, 48), nn.Linear(48, 32))
        config = tn_peft.AdapterConfig(graph=name, graph_args=dict(args), target_modules=["0", "1"])
        peft_model = tn_peft.get_model(model, config)
        with torch.no_grad():
            for p in peft_model.parameters():
                if p.requires_grad:
                    p.uniform_(-1, 1)
        with tempfile.TemporaryDirectory() as folder:
            peft_model.save_pretrained(folder)
            digest = hashlib.sha256()
            with safe_open(os.path.join(folder, "adapter_model.safetensors"), "pt") as f:
                digest.update(json.dumps(f.metadata(), sort_keys=True).encode())
                for key in sorted(f.keys()):
                    tensor = f.get_tensor(key)
                    digest.update(f"{key} {tensor.dtype} {tuple(tensor.shape)}".encode())
                    digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
            with open(os.path.join(folder, "adapter_config.json"), "rb") as f:
                digest.update(f.read())
        lines.append(f"checkpoint {name}{args}: {digest.hexdigest()[:16]}")
    return lines


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.stdout.write("\n".join(plan_lines() + checkpoint_lines()) + "\n")
