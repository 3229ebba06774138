"""Int bitmaps: sets of legs or of operands as the bits of an int (the searches' subsets)."""

from __future__ import annotations


def bits(mask: int):
    """Indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def submasks(mask: int):
    """Non-empty submasks of ``mask`` in increasing order (so every one precedes its supersets)."""
    sub = 0
    while True:
        sub = (sub - mask) & mask
        if not sub:
            return
        yield sub
