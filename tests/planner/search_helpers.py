"""Random planner problems shared by the search tests."""

import random

from tn_peft.planner import Operand, Problem


def random_problem(n: int, rng: random.Random, tokens=None, hub: bool = False) -> Problem:
    """A random connected network (a random tree plus a few extra bonds); ``hub``: operand 0 also
    shares a leg with every other operand (like x with the cores of a TT adapter)."""
    legs = [[] for _ in range(n)]
    sizes = {}

    def new(prefix):
        name = f"{prefix}{len(sizes)}"
        sizes[name] = rng.randint(2, 6)
        return name

    for i in range(1, n):
        leg = new("b")
        legs[i].append(leg)
        legs[rng.randrange(i)].append(leg)
        if hub and rng.random() < 0.9:
            leg = new("h")
            legs[0].append(leg)
            legs[i].append(leg)
    for _ in range(rng.randint(0, 3)):
        i, j = rng.sample(range(n), 2)
        leg = new("c")
        legs[i].append(leg)
        legs[j].append(leg)
    outs = [new("o") for _ in range(rng.randint(1, 2))]
    ins = [new("i") for _ in range(rng.randint(1, 2))]
    for leg in outs + ins:
        legs[rng.randrange(n)].append(leg)
    ops = [Operand(f"N{i}", tuple(legs[i]), "tensor", rng.random() < 0.7) for i in range(n)]
    return Problem.from_operands(ops, sizes, outs, ins, tokens=tokens, x_grad=rng.random() < 0.3)
