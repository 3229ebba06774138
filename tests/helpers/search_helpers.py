"""Random planner problems shared by the search tests."""

import random

from tn_peft.planner import Operand, Problem


def random_problem(n: int, rng: random.Random, tokens=None, hub: bool = False, hyper: int = 0) -> Problem:
    """A random connected network (a random tree plus a few extra bonds); ``hub``: operand 0 also
    shares a leg with every other operand (like x with the cores of a TT adapter); ``hyper``: that
    many of its operands are diagonals on an existing bond (a leg with three carriers, like s in
    U s V^T), or, every other one, a third tensor on it."""
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
    bonds = [leg for leg in sizes if leg[0] == "b"]
    kinds = ["tensor"] * n
    for h in range(min(hyper, n - 3)):
        i = n - 1 - h  # the last operands become the extra carriers
        leg = rng.choice([b for b in bonds if b in sizes and b not in legs[i]])
        if h % 2 == 0:
            dropped, legs[i], kinds[i] = legs[i], [leg], "diagonal"
            other = next(o for o in legs if leg in o and o is not legs[i])
            for x in dropped:  # a diagonal holds only the bond: its other legs go to a neighbour
                holders = [o for o in legs if x in o]
                if not any(o is other for o in holders):
                    other.append(x)
                elif len(holders) == 1 and x[0] not in "oi":  # it joined the two: it closes now
                    other.remove(x)
                    del sizes[x]
        else:
            legs[i].append(leg)
    ops = [Operand(f"N{i}", tuple(legs[i]), kinds[i], rng.random() < 0.7) for i in range(n)]
    return Problem.from_operands(ops, sizes, outs, ins, tokens=tokens, x_grad=rng.random() < 0.3)
