"""Quantization-aware training of adapter parameters: n-bit quantizers with a straight-through estimator,
and their packed checkpoint form.

A node kind that takes the ``bits`` option (``pauli`` angles, ``diagonal`` values) trains its
parameters through a quantizer ``q``: the forward pass uses ``q(x)``, the backward pass the identity
(``x + (q(x) - x).detach()``, the straight-through estimator), so the trained parameters are full
precision but the adapter the model computes with, saves and loads is the quantized one.

- :class:`AngleQuantizer` (circuit angles, which are periodic): ``2^b`` uniform levels over one
  period ``P`` of the gate, ``q(x) = c(x) P / 2^b`` with the code ``c(x) = round(x 2^b / P)`` wrapped
  into ``[-2^(b-1), 2^(b-1))``: on the circle, never clipped. For the half-angle rotations of
  :mod:`tn_peft.nodes.circuit.apply` (``RY(t) = [[cos t/2, -sin t/2], [sin t/2, cos t/2]]``) ``P = 4 pi``;
  the levels include 0 (the identity gate). One bit gives the levels {0, -2 pi}: gates +-I.
- :class:`SymmetricQuantizer` (unbounded values): ``q(x) = c(x) 2^e`` with ``c`` in
  ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` and the smallest power-of-two step ``2^e`` that covers
  ``max |x|``; one bit is ``+-2^e`` with ``2^e`` the power of two nearest ``mean |x|``. A power-of-two
  step makes ``q`` idempotent bit for bit (``q(q(x)) == q(x)``), so a loaded checkpoint computes exactly
  the trained adapter.

In ``adapter_model.safetensors`` a quantized tensor ``KEY`` is two tensors: ``KEY.codes`` (uint8,
the codes offset to ``0 .. 2^b - 1`` and packed ``8 // b`` per byte for b in 1, 2, 4, else one
byte each, little end first) and ``KEY.scale`` (float32 scalar: the step). See :func:`encode` and
:func:`decode`.
"""

from __future__ import annotations

import math

import torch

from ..errors import CheckpointError, SpecError

#: bits a quantizer takes; 0 means full precision
MAX_BITS = 8
#: suffixes of a quantized tensor's two checkpoint entries
CODES, SCALE = ".codes", ".scale"


def check_bits(bits, node: str | None = None) -> int:
    """``bits`` as an int in 0..8 (0: not quantized), else a SpecError naming the node."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= MAX_BITS:
        raise SpecError(f"bits must be an integer from 0 (full precision) to {MAX_BITS}, got {bits!r}",
                        node=node, fix="use bits: 0, or 1..8 to train through an n-bit quantizer")
    return bits


def straight_through(x: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """``quantized`` in the forward pass, the identity's gradient in the backward pass."""
    return x + (quantized - x).detach()


class Quantizer:
    """``b``-bit quantizer: ``codes(x)`` (integers), ``step(x)`` (a scalar), ``values(codes, step)``.

    ``q(x) = values(codes(x), step(x))``; calling the quantizer applies ``q`` with a straight-through
    gradient. ``offset`` maps codes onto ``0 .. 2^b - 1`` for storage.
    """

    kind = ""
    offset = 0

    def __init__(self, bits: int) -> None:
        if check_bits(bits) == 0:
            raise SpecError("a quantizer needs 1..8 bits", fix="use bits >= 1, or no quantizer")
        self.bits = bits

    def step(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def codes(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def values(self, codes: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        return codes.to(step.dtype) * step

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """``q(x)`` without gradient."""
        with torch.no_grad():
            step = self.step(x)
            return self.values(self.codes(x, step), step)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return straight_through(x, self.quantize(x))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits})"


class AngleQuantizer(Quantizer):
    """``2^b`` levels over one period: codes ``round(x 2^b / P)`` wrapped into ``[-2^(b-1), 2^(b-1))``.

    >>> q = AngleQuantizer(2)           # levels 0, pi, -2 pi, -pi  (P = 4 pi)
    >>> q.quantize(torch.tensor([0.1, 3.0, 6.0, -4.0])) / math.pi
    tensor([ 0.,  1., -2., -1.])
    """

    kind = "angle"

    def __init__(self, bits: int, period: float = 4 * math.pi) -> None:
        super().__init__(bits)
        self.period = float(period)

    @property
    def offset(self) -> int:
        return 2 ** (self.bits - 1)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.period / 2 ** self.bits, dtype=x.dtype, device=x.device)

    def codes(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        levels = 2 ** self.bits
        return torch.remainder(torch.round(x / step).to(torch.int64) + levels // 2, levels) - levels // 2


class SymmetricQuantizer(Quantizer):
    """Codes in ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` times a power-of-two step covering ``max |x|``;
    one bit: ``+-`` the power of two nearest ``mean |x|``. All zeros stay zeros.

    >>> SymmetricQuantizer(3).quantize(torch.tensor([0.1, -0.5, 1.1]))
    tensor([ 0.0000, -0.5000,  1.0000])
    """

    kind = "symmetric"

    @property
    def levels(self) -> int:
        """The largest code (0 for one bit, whose codes are the signs)."""
        return 2 ** (self.bits - 1) - 1

    @property
    def offset(self) -> int:
        return self.levels if self.bits > 1 else 0

    def step(self, x: torch.Tensor) -> torch.Tensor:
        size = x.detach().abs().mean() if self.bits == 1 else x.detach().abs().max() / self.levels
        if not bool(size > 0) or not bool(torch.isfinite(size)):
            return torch.ones((), dtype=x.dtype, device=x.device)
        mantissa, exponent = torch.frexp(size)          # size = m 2^e, m in [0.5, 1)
        if self.bits == 1:                               # nearest power of two (in log scale)
            exponent = exponent - (mantissa < math.sqrt(0.5)).to(exponent.dtype)
        else:                                            # the smallest power of two >= size
            exponent = exponent - (mantissa == 0.5).to(exponent.dtype)
        return torch.ldexp(torch.ones((), dtype=x.dtype, device=x.device), exponent)

    def codes(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        if self.bits == 1:
            return (x >= 0).to(torch.int64)
        return torch.clamp(torch.round(x / step), -self.levels, self.levels).to(torch.int64)

    def values(self, codes: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        if self.bits == 1:
            return (2 * codes - 1).to(step.dtype) * step
        return codes.to(step.dtype) * step

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if not bool((x != 0).any()):
            return torch.zeros_like(x)
        return super().quantize(x)


# ------------------------------------------------------------------ packing
def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` codes of ``bits`` take packed (``8 // bits`` per byte for 1, 2, 4 bits)."""
    per_byte = 8 // bits if 8 % bits == 0 else 1
    return math.ceil(count / per_byte)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Codes in ``0 .. 2^bits - 1`` (any shape) -> a flat uint8 tensor, ``8 // bits`` per byte, low bits first.

    >>> pack_codes(torch.tensor([1, 0, 3, 2]), 2)
    tensor([177], dtype=torch.uint8)
    """
    flat = codes.reshape(-1).to(torch.int64)
    per_byte = 8 // bits if 8 % bits == 0 else 1
    pad = (-flat.numel()) % per_byte
    flat = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, per_byte)
    shifts = torch.arange(per_byte, device=flat.device) * bits
    return (flat << shifts).sum(dim=1).to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The first ``count`` codes of :func:`pack_codes`' output, as int64."""
    per_byte = 8 // bits if 8 % bits == 0 else 1
    shifts = torch.arange(per_byte, device=packed.device) * bits
    codes = (packed.to(torch.int64).reshape(-1, 1) >> shifts) & (2 ** bits - 1)
    return codes.reshape(-1)[:count]


def encode(x: torch.Tensor, quantizer: Quantizer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(packed codes, step)`` of ``q(x)``: what the checkpoint stores for a quantized tensor."""
    with torch.no_grad():
        x = x.detach()
        step = quantizer.step(x)
        codes = quantizer.codes(x, step) + quantizer.offset
        return pack_codes(codes, quantizer.bits), step.to(torch.float32)


def decode(packed: torch.Tensor, step: torch.Tensor, quantizer: Quantizer, shape, *, key: str = "",
           path: str = "") -> torch.Tensor:
    """``q(x)`` (float32, ``shape``) back from :func:`encode`'s pair; CheckpointError naming ``path`` and
    ``key`` for a pair that cannot be the encoding of such a tensor."""
    count = math.prod(shape)
    where = f"{path}: key {key!r}" if path else f"key {key!r}"
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != packed_size(count, quantizer.bits):
        raise CheckpointError(f"{where}{CODES} must be {packed_size(count, quantizer.bits)} uint8 bytes "
                              f"({count} codes of {quantizer.bits} bits), got {packed.dtype} of shape "
                              f"{tuple(packed.shape)}; the checkpoint was saved with other bits or another graph")
    if step.numel() != 1 or not bool(torch.isfinite(step).all()) or not bool((step > 0).all()):
        raise CheckpointError(f"{where}{SCALE} must be one positive finite number, got {step.tolist()!r}")
    codes = unpack_codes(packed, quantizer.bits, count)
    if quantizer.kind == "symmetric" and quantizer.bits > 1 and bool((codes > 2 * quantizer.offset).any()):
        raise CheckpointError(f"{where}{CODES} holds codes beyond the {quantizer.bits}-bit range")
    step = step.reshape(()).to(torch.float32)
    return quantizer.values(codes - quantizer.offset, step).reshape(shape)


__all__ = [
    "CODES",
    "MAX_BITS",
    "SCALE",
    "AngleQuantizer",
    "Quantizer",
    "SymmetricQuantizer",
    "check_bits",
    "decode",
    "encode",
    "pack_codes",
    "packed_size",
    "straight_through",
    "unpack_codes",
]
