"""The models and the SGD loop shared by the FSDP2 test and its worker processes."""

import torch
from model_helpers import TARGETS, tiny_gpt2

import tn_peft

#: graph name -> graph_args: Quantum-PEFT (batched Pauli nodes on one process) and LoTR (shared nodes)
GRAPHS = {"quantum_peft": {"layers": 1}, "lotr": {"rank": 2}}
STEPS = 3


def build(graph: str):
    """Tiny GPT-2 (two GPT2Blocks; c_attn, c_proj adapted) with ``graph``, in eval mode (no dropout)."""
    return tn_peft.get_model(tiny_gpt2(), tn_peft.AdapterConfig(graph=graph, graph_args=GRAPHS[graph],
                                                                target_modules=TARGETS["gpt2"]))


def sgd_steps(model, batch, steps: int) -> list[float]:
    """``steps`` SGD steps of the causal-LM loss on ``batch``; the loss before each step."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    losses = []
    for _ in range(steps):
        loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return losses
