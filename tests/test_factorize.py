import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from tn_peft.factorize import balanced_factors, prime_factors


@given(st.integers(2, 5000))
def test_prime_factors_multiply_back(n):
    assert math.prod(prime_factors(n)) == n


def _brute(n, count):
    best = None
    divisors = [d for d in range(2, n + 1) if n % d == 0]
    for combo in itertools.combinations_with_replacement(divisors, count):
        if math.prod(combo) == n:
            key = (max(combo), -min(combo))
            if best is None or key < best:
                best = key
    return best


@given(st.integers(2, 600), st.integers(1, 3))
def test_balanced_is_optimal(n, count):
    got = balanced_factors(n, count)
    expected = _brute(n, count)
    if expected is None:
        assert got is None
    else:
        assert math.prod(got) == n and min(got) >= 2
        assert (max(got), -min(got)) == expected
        assert got == sorted(got, reverse=True)


def test_known_sizes():
    assert balanced_factors(4096, 3) == [16, 16, 16]
    assert balanced_factors(384, 3) == [8, 8, 6]
    assert balanced_factors(383, 2) is None


def test_huge_smooth_sizes_split_at_once():
    # divisors come from the prime factors, not from trial division up to sqrt(n) (2^35 steps here)
    from tn_peft.factorize import _divisors

    assert _divisors(2**70) == tuple(2**k for k in range(71))
    assert balanced_factors(2**70, 70) == [2] * 70
