"""Helpers for the budget tests (tn_peft.model.budget, tn_peft.model.budget_grow): a tiny random BERT, its
batches, and a training loop that runs a budget's allocator as tn-peft finetune does."""

from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from tn_peft.model.peft_method import TnPeftConfig

ALL6 = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
#: what the budget tests adapt (5 modules: "output.dense" also matches attention.output.dense), few for speed
FOUR = ["query", "value", "intermediate.dense", "output.dense"]


def tiny_bert(hidden: int = 48, layers: int = 1):
    """A random BERT: 48 = 3 x 16 (mixed-radix circuits), 96 = 3 x 32; 32: qubit circuits."""
    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=2, intermediate_size=2 * hidden)
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def batch(seed: int, size: int = 8):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (size, 10), generator=g)
    return ids, torch.ones_like(ids), ids[:, 0] % 2


def hidden(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).last_hidden_state.mean(1)


def train_pruned(model, pruner, head, steps: int, lr: float = 0.05, *, finish: bool = True, after_step=None):
    """Train ``steps`` steps with ``pruner`` (a BudgetPruner or BudgetGrower) observing and stepping, calling
    ``after_step(step)`` after each (it may evaluate: each step starts in train mode); then finish it (unless
    ``finish`` is False). Returns the optimizer."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + list(head.parameters()), lr=lr)
    for step in range(steps):
        model.train()
        ids, mask, labels = batch(step)
        loss = torch.nn.functional.cross_entropy(head(hidden(model, ids, mask)), labels)
        optimizer.zero_grad()
        loss.backward()
        pruner.observe()
        optimizer.step()
        pruner.step(step + 1, optimizer)
        if after_step is not None:
            after_step(step)
    if finish:
        pruner.finish(optimizer)
    model.eval()
    return optimizer


def peft_model(base, budget: int, layers: int = 3, rank: int = 4, targets=FOUR, mode: str = "prune"):
    """A copy of ``base`` with a quantum_peft adapter of ``budget`` (``mode``: budget_mode) through peft's door."""
    config = TnPeftConfig(graph="quantum_peft", target_modules=targets,
                          graph_args={"layers": layers, "rank": rank, "budget": budget, "budget_mode": mode})
    return peft.get_peft_model(copy.deepcopy(base), config)


def grow_model(base, budget: int, layers: int = 4, rank: int = 4, targets=FOUR):
    """:func:`peft_model` with ``budget_mode: grow`` (even depth: depth grows in pairs)."""
    return peft_model(base, budget, layers, rank, targets, mode="grow")
