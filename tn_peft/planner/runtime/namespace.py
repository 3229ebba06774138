"""The namespace a plan's generated source is compiled in: ``torch``, ``F`` and :func:`apply_circuit`."""

from __future__ import annotations

import torch


def apply_circuit(circuit, state: torch.Tensor, transpose: bool) -> torch.Tensor:
    """Apply a renormalized node's gate network to the rows of ``state`` (see nodes' ``as_network``).

    ``circuit``: the node module (or its ``CircuitNetwork``). ``transpose=True``: ``state @ Q``
    (rows of length N -> k); else ``state @ Q^T`` (k -> N). On CUDA with triton: one fused kernel (unless switched off: :mod:`.switches`).
    """
    if state.is_cuda:
        from . import triton_kernels
        from .switches import why_off

        if triton_kernels.available() and why_off("circuit_rows", state.shape[0]) is None:
            return triton_kernels.circuit_rows(state, circuit, transpose)
    network = circuit.as_network() if hasattr(circuit, "as_network") else circuit
    if transpose:
        return network.apply(state)
    return network.apply_transpose(state)


#: The globals of every compiled program (``planner.emit.RESERVED`` keeps operand names clear of them).
NAMESPACE = {"torch": torch, "F": torch.nn.functional, "apply_circuit": apply_circuit}
