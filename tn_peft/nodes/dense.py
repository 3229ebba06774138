"""``dense``: a free tensor, every entry a trainable parameter (LoRA factors, TT cores, QuanTA gates)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SpecError
from .base import Node

INITS = ("zeros", "normal", "uniform", "kaiming", "identity")


class Dense(Node, kind="dense"):
    """A dense tensor ``T[legs...]`` with ``prod(shape)`` parameters.

    Options: ``init`` one of zeros | normal | uniform | kaiming | identity, ``std`` for ``normal``
    (default ``1/sqrt(fan_in)``, fan_in = product of the last ``fan_in_legs`` legs, by default all
    legs but the first). ``kaiming`` is LoRA's
    ``kaiming_uniform(a=sqrt(5))``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). ``identity`` needs the legs to
    split into two halves of equal size (out legs first), and gives the identity map.
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int], *,
                 init: str = "normal", std: float | None = None,
                 fan_in_legs: int | None = None) -> None:
        super().__init__(name, legs, shape)
        if init not in INITS:
            raise SpecError(f"init {init!r} is not known", node=name, fix=f"use one of {', '.join(INITS)}")
        trailing = len(self.shape) - 1 if fan_in_legs is None else int(fan_in_legs)
        fan_in = math.prod(self.shape[len(self.shape) - trailing:]) if trailing > 0 else 1
        tensor = torch.empty(self.shape)
        if init == "zeros":
            tensor.zero_()
        elif init == "normal":
            tensor.normal_(0.0, std if std is not None else 1.0 / math.sqrt(fan_in))
        elif init in ("uniform", "kaiming"):
            bound = 1.0 / math.sqrt(fan_in)
            tensor.uniform_(-bound, bound)
        else:
            half = len(self.shape) // 2
            rows, cols = math.prod(self.shape[:half]), math.prod(self.shape[half:])
            if len(self.shape) % 2 or rows != cols:
                raise SpecError(f"init 'identity' needs legs that split into two equal halves, got {self.shape}",
                                node=name, fix="use init: normal, or give the node matching out/in legs")
            tensor = torch.eye(rows).reshape(self.shape)
        self.weight = nn.Parameter(tensor)

    def forward(self) -> torch.Tensor:
        return self.weight

    def right_inverse(self, tensor: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight.copy_(tensor.reshape(self.shape))
