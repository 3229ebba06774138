"""Stand-ins used only while the real pieces are missing from the tree.

- :class:`FallbackPauli`: a mixed-radix Pauli circuit node (QUANTUM_PEFT.md sec. 2 and 3), registered
  as kind ``pauli`` only if ``tn_peft.nodes`` does not provide one.
- :func:`get_model` / :class:`AdapterConfig`: a thin version of ``tn_peft.get_model`` (PEFT-style
  target matching, frozen base, ``save_pretrained``), used only if ``tn_peft`` does not export them.

:mod:`tn_peft.finetune.methods` picks the real implementation whenever it exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..nodes.base import Node, REGISTRY, StiefelNode


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n``, largest first (the most significant wire gets the odd radix)."""
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return sorted(factors, reverse=True)


class FallbackPauli(StiefelNode):
    """First ``cols`` columns of a simplified-two-design circuit on wires of size ``prime_factors(rows)``.

    A wire of size d carries a d x d orthogonal gate exp(B - B^T) (d(d-1)/2 angles; RY for d = 2);
    CZ generalizes to the sign diagonal (-1)^(i*j). Layout: an initial gate on every wire, then
    ``layers`` times: CZ + gates on the even pairs, CZ + gates on the odd pairs.
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *, layers: int = 1,
                 init: str = "uniform", std: float = 0.1, cols: Any = None) -> None:
        super().__init__(name, legs, shape, cols)
        self.wires = prime_factors(self.rows) if self.rows > 1 else [1]
        q = len(self.wires)
        self.layers = int(layers)
        even = [(a, a + 1) for a in range(0, q - 1, 2)]
        odd = [(a, a + 1) for a in range(1, q - 1, 2)]
        # schedule: ("gate", wire) or ("cz", sign-buffer name)
        self.schedule: list[tuple[str, Any]] = [("gate", w) for w in range(q)]
        for _ in range(self.layers):
            for which, pairs in (("cz_even", even), ("cz_odd", odd)):
                if pairs:
                    self.schedule.append(("cz", which))
                    self.schedule += [("gate", w) for pair in pairs for w in pair]
        gate_wires = [w for op, w in self.schedule if op == "gate"]
        counts = [self.wires[w] * (self.wires[w] - 1) // 2 for w in gate_wires]
        total = sum(counts)
        if init == "uniform":
            angles = (torch.rand(total) * 2 - 1) * math.pi
        else:
            angles = torch.randn(total) * std
        self.angles = nn.Parameter(angles)
        self._gate_wires, self._counts = gate_wires, counts
        for which, pairs in (("cz_even", even), ("cz_odd", odd)):
            sign = torch.ones(self.wires)
            for a, b in pairs:
                shape = [1] * q
                shape[a], shape[b] = self.wires[a], self.wires[b]
                ia = torch.arange(self.wires[a]).reshape([-1 if i == a else 1 for i in range(q)])
                ib = torch.arange(self.wires[b]).reshape([-1 if i == b else 1 for i in range(q)])
                sign = sign * (1 - 2 * ((ia * ib) % 2)).to(sign.dtype)
            self.register_buffer(which, sign.unsqueeze(-1), persistent=False)

    def _gates(self) -> list[torch.Tensor]:
        gates, offset = [], 0
        qubit = [i for i, w in enumerate(self._gate_wires) if self.wires[w] == 2]
        out: list[torch.Tensor | None] = [None] * len(self._gate_wires)
        if qubit:
            idx = torch.tensor([sum(self._counts[:i]) for i in qubit], device=self.angles.device)
            half = self.angles[idx] / 2
            c, s = torch.cos(half), torch.sin(half)
            ry = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
            for j, i in enumerate(qubit):
                out[i] = ry[j]
        for i, w in enumerate(self._gate_wires):
            d, n = self.wires[w], self._counts[i]
            if out[i] is None:
                start = sum(self._counts[:i])
                gen = self.angles.new_zeros(d, d)
                rows, cols = torch.tril_indices(d, d, -1)
                gen = gen.index_put((rows, cols), self.angles[start:start + n])
                out[i] = torch.linalg.matrix_exp(gen - gen.T)
            offset += n
        return out  # type: ignore[return-value]

    def matrix(self) -> torch.Tensor:
        q = len(self.wires)
        state = torch.eye(self.rows, self.cols, dtype=self.angles.dtype, device=self.angles.device)
        state = state.reshape(*self.wires, self.cols)
        gates = iter(self._gates())
        for op, arg in self.schedule:
            if op == "cz":
                state = state * getattr(self, arg)
            else:
                state = torch.movedim(torch.tensordot(next(gates), state, dims=([1], [arg])), 0, arg)
        return state.reshape(self.rows, self.cols) if q else state


def ensure_pauli_kind() -> bool:
    """Register :class:`FallbackPauli` as kind ``pauli`` if the tree has none; True if it did."""
    from .. import nodes  # noqa: F401  (registers the built-in kinds first)

    if "pauli" in REGISTRY:
        return REGISTRY["pauli"] is FallbackPauli
    REGISTRY["pauli"] = FallbackPauli
    FallbackPauli.kind = "pauli"
    return True


# ---------------------------------------------------------------- model wrapper
@dataclass
class AdapterConfig:
    graph: Any = "quantum_peft"
    graph_args: dict[str, Any] = field(default_factory=dict)
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    alpha: float | None = None
    dropout: float = 0.0


class AdaptedLinear(nn.Module):
    """``base(x) + adapter(dropout(x))`` with the base frozen."""

    def __init__(self, base: nn.Linear, adapter: nn.Module, dropout: float) -> None:
        super().__init__()
        self.base, self.adapter = base, adapter
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.adapter(self.dropout(x))


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


class AdaptedModel(nn.Module):
    def __init__(self, model: nn.Module, config: AdapterConfig) -> None:
        super().__init__()
        from ..spec import load_graph

        ensure_pauli_kind()
        self.model, self.config = model, config
        args = dict(config.graph_args)
        if config.alpha is not None:
            args["alpha"] = config.alpha
        self.network = load_graph(config.graph, **args)
        for p in model.parameters():
            p.requires_grad_(False)
        targets = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)
                   and _matches(n, config.target_modules)]
        if not targets:
            raise ValueError(f"no nn.Linear module matches target_modules={config.target_modules}")
        for name, module in targets:
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            adapter = self.network.build(module.in_features, module.out_features)
            setattr(parent, name.rsplit(".", 1)[-1], AdaptedLinear(module, adapter, config.dropout))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.model.named_parameters() if p.requires_grad}

    def save_pretrained(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.adapter_state_dict(), str(directory / "adapter_model.safetensors"))
        config = asdict(self.config)
        config["graph"] = self.network.to_spec()
        (directory / "adapter_config.json").write_text(json.dumps(config, indent=2, default=str))

    def print_trainable_parameters(self) -> None:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")


def get_model(model: nn.Module, config: AdapterConfig) -> AdaptedModel:
    return AdaptedModel(model, config)
