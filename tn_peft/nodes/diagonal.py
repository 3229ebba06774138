"""``diagonal``: a vector on one leg that the network shares as a hyperedge (``s`` in ``U diag(s) V^T``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SpecError
from .quantize import SymmetricQuantizer, check_bits
from .base import Node


class Diagonal(Node, kind="diagonal"):
    """``s[k]``: a diagonal matrix stored as its k entries; its one leg is a hyperedge of the network.

    Options: ``init`` zeros (default: dW starts at 0) | ones | normal, ``std`` for normal; ``bits``
    (0: full precision; 1..8: trained through a symmetric power-of-two-step quantizer,
    :class:`tn_peft.nodes.quantize.SymmetricQuantizer`, and saved as packed codes).
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *,
                 init: str = "zeros", std: float = 1.0, bits: int = 0) -> None:
        super().__init__(name, legs, shape)
        if len(self.shape) != 1:
            raise SpecError(f"a diagonal node has exactly one leg, got {list(self.legs)}", node=name,
                            fix="give it one leg and put that leg on the nodes it scales (a hyperedge)")
        if init == "zeros":
            values = torch.zeros(self.shape)
        elif init == "ones":
            values = torch.ones(self.shape)
        elif init == "normal":
            values = torch.randn(self.shape) * std
        else:
            raise SpecError(f"init {init!r} is not known", node=name, fix="use zeros, ones or normal")
        self.values = nn.Parameter(values)
        self.bits = check_bits(bits, node=name)
        if bits:
            self.quantizers = {"values": SymmetricQuantizer(bits)}

    def forward(self) -> torch.Tensor:
        return self.quantized("values")

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", bits={self.bits}" if self.bits else "")

    def right_inverse(self, tensor: torch.Tensor) -> None:
        with torch.no_grad():
            self.values.copy_(tensor.reshape(self.shape))
