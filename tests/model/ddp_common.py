"""The models and the training step shared by the DDP tests and their worker processes."""

import torch
from model_helpers import TARGETS, minilm, qpeft_config, tiny_gpt2

import tn_peft


def build_model(kind: str = "gpt2"):
    """Tiny GPT-2 (Conv1D; c_attn, c_proj) or the real MiniLM (query, value), with Quantum-PEFT."""
    base = tiny_gpt2() if kind == "gpt2" else minilm()
    return tn_peft.get_model(base, qpeft_config(TARGETS[kind]))


def loss_of(module, batch):
    """Causal-LM loss for GPT-2; for MiniLM, regress the mean-pooled embedding onto a fixed target."""
    ids = batch["input_ids"]
    if "target" not in batch:
        return module(input_ids=ids, labels=ids).loss
    hidden = module(input_ids=ids).last_hidden_state
    return torch.nn.functional.mse_loss(hidden.mean(1), batch["target"])


def train_step(module, model, batch):
    """One SGD step; returns (grads, params after the step) of the trainable parameters.

    (SGD, not AdamW: Adam's first step is lr * g / (|g| + eps), which turns 1e-9 differences in
    near-zero gradients into lr-sized ones, so the parameters would not be comparable.)
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-1)
    loss_of(module, batch).backward()
    params = dict(model.named_parameters())
    grads = {n: params[n].grad.detach().clone() for n in names}
    optimizer.step()
    return grads, {n: params[n].detach().clone() for n in names}
