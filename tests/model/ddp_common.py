"""The model and the training step shared by the DDP test and its worker processes."""

import torch

import tn_peft
from model_helpers import TARGETS, qpeft_config, tiny_gpt2


def build_model():
    """Tiny GPT-2 (Conv1D) with Quantum-PEFT on c_attn and c_proj."""
    return tn_peft.get_model(tiny_gpt2(), qpeft_config(TARGETS["gpt2"]))


def train_step(module, model, batch):
    """One AdamW step of the causal-LM loss; returns (grads, params after the step) of trainable parameters."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = module(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    loss.backward()
    params = dict(model.named_parameters())
    grads = {n: params[n].grad.detach().clone() for n in names}
    optimizer.step()
    return grads, {n: params[n].detach().clone() for n in names}
