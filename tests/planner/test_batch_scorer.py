"""BatchScorer (tn_peft/planner/cost/batch_scorer.py) gives the scalar Scorer's objectives, many pairs at once."""

import random

import numpy as np
import pytest
from search_helpers import random_problem

from tn_peft.planner import CostModel, Operand, Problem
from tn_peft.planner.cost.batch_scorer import BatchScorer
from tn_peft.planner.cost.scorer import Scorer
from tn_peft.graph.spec import load_graph


def random_pairs(n: int, rng: random.Random, count: int = 200) -> tuple[np.ndarray, np.ndarray]:
    pairs = []
    while len(pairs) < count:
        s1 = rng.randrange(1, 1 << n)
        s2 = rng.randrange(1, 1 << n) & ~s1
        if s2:
            pairs.append((s1, s2))
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def assert_matches_scalar(problem: Problem, model: CostModel, rng: random.Random, gated=frozenset()):
    scorer = Scorer(problem, model, gated)
    s1, s2 = random_pairs(scorer.n, rng)
    got, entries = BatchScorer(scorer).objectives(s1, s2)
    for a, b, value, size in zip(s1.tolist(), s2.tolist(), got.tolist(), entries.tolist()):
        expected = scorer.objective(a, b)
        assert value == expected, (a, b)  # one formula (cost.step), same operations: equal to the last bit
        assert size == pytest.approx(scorer.size(scorer.legs_mask(a | b)), rel=1e-12)


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_random_networks_match_the_scalar_scorer(seed, device):
    rng = random.Random(seed)
    problem = random_problem(rng.randint(4, 12), rng, tokens=rng.choice([None, 1, 3, 64]), hub=seed % 2 == 0,
                             hyper=seed % 4)
    assert_matches_scalar(problem, CostModel.for_device(device), rng)


@pytest.mark.parametrize("graph", ["svd", "ttd", "quanta", "lotr", "kron"])
@pytest.mark.parametrize("tokens", [None, 1, 4096])
def test_catalog_networks_match_the_scalar_scorer(graph, tokens):
    # broadcast steps (the diagonal s), fresh-allocation terms at T = 4096, permute copies
    problem = Problem.from_network(load_graph(graph), 4096, 4096, tokens=tokens)
    assert_matches_scalar(problem, CostModel(), random.Random(1))


def test_circuit_steps_are_costed_like_the_scalar_scorer():
    problem = Problem.from_network(load_graph("quantum_peft"), 256, 256, tokens=64,
                                   circuits={"U": (15, 2), "V": (15, 2)})
    gated = frozenset(i for i, op in enumerate(problem.operands) if op.kind == "circuit")
    assert gated
    rng = random.Random(2)
    assert_matches_scalar(problem, CostModel(), rng, gated)
    scorer = Scorer(problem, CostModel(), gated)
    values, _ = BatchScorer(scorer).objectives(*random_pairs(scorer.n, rng, 400))
    assert np.isinf(values).any()  # a circuit that cannot apply gate by gate there: infeasible


def test_more_legs_than_bits_of_a_word():
    problem = Problem.from_network(load_graph("tt", cores=30, rank=4), 2**30, 2**30)
    assert len(Scorer(problem, CostModel()).leg_sizes) > 64
    assert_matches_scalar(problem, CostModel(), random.Random(3))


def test_at_most_63_operands():
    ops = [Operand(f"N{i}", (f"b{i}", f"b{i + 1}")) for i in range(64)]
    problem = Problem.from_operands(ops, {f"b{i}": 2 for i in range(65)}, ["b0"], ["b64"])
    with pytest.raises(ValueError, match="63 operands"):
        BatchScorer(Scorer(problem, CostModel()))
