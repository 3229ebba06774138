"""Helpers for conversion tests: real PEFT LoRA checkpoints on MiniLM (offline), tiny GPT-2 (Conv1D)
and tiny Llama (grouped-query attention), with random non-zero factors so dW != 0."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from real_models import minilm, minilm_path  # noqa: F401 - re-exported to the tests

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def tiny_gpt2():
    torch.manual_seed(1)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=101, n_positions=32)
    return transformers.GPT2LMHeadModel(config).eval()


def tiny_llama():
    torch.manual_seed(2)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=101,
                                      max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config).eval()


def make_lora(base, directory: Path, seed: int = 0, **config):
    """Wrap a deep copy of ``base`` with a random (non-zero) LoRA, save it, return the peft model."""
    torch.manual_seed(seed)
    config.setdefault("init_lora_weights", False)
    model = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(**config)).eval()
    model.save_pretrained(str(directory))
    return model


def token_batch(vocab: int = 101, seed: int = 0, batch: int = 2, length: int = 7) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def outputs(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state




def stiefel_maps() -> list[str]:
    """The Stiefel maps with a right inverse that conversion supports (exp, cayley, householder)."""
    from tn_peft.nodes.base import REGISTRY, load_builtin_kinds

    load_builtin_kinds()
    real = [m for m in ("exp", "cayley", "householder") if m in REGISTRY]
    if not real:
        pytest.skip("no Stiefel map with a right inverse is registered", allow_module_level=True)
    return real


def fast_map() -> str:
    """The Stiefel map with the cheapest right inverse (householder: a QR), for tests not about maps."""
    maps = stiefel_maps()
    return "householder" if "householder" in maps else maps[0]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())
