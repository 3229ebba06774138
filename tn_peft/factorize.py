"""Splitting a layer size into factor legs (TT cores, QuanTA axes, Kronecker blocks).

``balanced_factors(384, 3) -> [8, 8, 6]``: factors as equal as possible, largest first.
"""

from __future__ import annotations

import math
from functools import lru_cache


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` with multiplicity, ascending: ``prime_factors(384) == [2]*7 + [3]``."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


@lru_cache(maxsize=4096)
def _divisors(n: int) -> tuple[int, ...]:
    """Every divisor of ``n``, ascending, from its prime factors (2^70 has 71, found at once)."""
    divisors = {1}
    for p in prime_factors(n):
        divisors |= {d * p for d in divisors}
    return tuple(sorted(divisors))


def balanced_factors(n: int, count: int, *, minimum: int = 2) -> list[int] | None:
    """Split ``n`` into ``count`` factors, each >= ``minimum``, minimizing the largest factor.

    Ties go to the split whose smallest factor is largest. Factors are returned largest first.
    Returns ``None`` when no such split exists (e.g. a prime into two factors >= 2).

    >>> balanced_factors(4096, 3)
    [16, 16, 16]
    >>> balanced_factors(384, 2)
    [24, 16]
    """
    if count < 1 or n < 1:
        return None
    if count == 1:
        return [n] if n >= minimum else None
    best: tuple[int, int, list[int]] | None = None

    def search(rest: int, left: int, cap: int, chosen: list[int]) -> None:
        nonlocal best
        if left == 1:
            if minimum <= rest <= cap:
                split = chosen + [rest]
                key = (max(split), -min(split))
                if best is None or key < best[:2]:
                    best = (key[0], key[1], split)
            return
        # the next factor is the largest remaining one: at least rest^(1/left), at most cap
        low = max(minimum, math.ceil(round(rest ** (1.0 / left), 9)))
        for d in _divisors(rest):
            if d < low or d > cap:
                continue
            if best is not None and d > best[0]:
                break
            search(rest // d, left - 1, d, chosen + [d])

    search(n, count, n, [])
    return None if best is None else best[2]
