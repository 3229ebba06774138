"""The cost model: FLOP counts, and predicted saved bytes against what torch really saves."""

import pytest
import torch

from tn_peft.planner import CostModel, Problem, make_plan, measure
from tn_peft.planner.cost import StepCost, circuit_cost, pair_cost
from tn_peft.graph.spec import catalog, load_graph

MODEL = CostModel()


def test_pair_cost_counts():
    sizes = {"t": 8, "i": 16, "r": 4}
    step = pair_cost(MODEL, {"t", "i"}, {"i", "r"}, {"t", "r"}, sizes, grad_a=False, grad_b=True)
    assert (step.flops, step.backward_flops, step.saved) == (2 * 8 * 16 * 4, 2 * 8 * 16 * 4, 8 * 16 * 4)
    both = pair_cost(MODEL, {"t", "i"}, {"i", "r"}, {"t", "r"}, sizes, grad_a=True, grad_b=True)
    assert both.backward_flops == 2 * step.backward_flops
    assert both.saved == (8 * 16 + 16 * 4) * 4
    node_a = pair_cost(MODEL, {"t", "i"}, {"i", "r"}, {"t", "r"}, sizes, grad_a=True, grad_b=True, count_a=False)
    assert node_a.saved == 16 * 4 * 4  # a node tensor is alive anyway: only B counts
    scaling = pair_cost(MODEL, {"t", "r"}, {"r"}, {"t", "r"}, sizes, grad_a=True, grad_b=True)
    assert scaling.flops == 8 * 4  # a diagonal is a broadcast multiply, not a matmul
    assert (step + both).flops == step.flops + both.flops
    circuit = circuit_cost(MODEL, 10, 16, 4, 2, True, True)  # 4 passes of 2x2 blocks over a (10, 16) state
    assert (circuit.flops, circuit.backward_flops) == (2 * 10 * 16 * 2 * 4, 2 * 2 * 10 * 16 * 2 * 4)
    assert circuit.saved == 10 * 16 * 4 * 4  # every pass's input state, when the gates need gradients


def test_objective_orders_time_then_memory():
    fast = StepCost(time=1e-3, saved=10 * 2**20)
    slow = StepCost(time=2e-3, saved=0)
    assert fast.objective(MODEL) < slow.objective(MODEL)
    lean = StepCost(time=1e-3, saved=0)
    assert lean.objective(MODEL) < fast.objective(MODEL)


def _shape(graph):
    return (64, 64) if graph in ("tt", "ttd", "quanta") else (96, 64)


@pytest.mark.parametrize("graph", catalog())
@pytest.mark.parametrize("tokens,x_grad", [(None, False), (16, False), (40, True)])
def test_predicted_saved_bytes_match_torch_within_5_percent(graph, tokens, x_grad):
    net = load_graph(graph)
    problem = Problem.from_network(net, *_shape(graph), tokens=tokens, x_grad=x_grad)
    for optimize in ("auto", "greedy"):
        plan = make_plan(problem, initial=net.delta, optimize=optimize)
        start = 1 if problem.has_x else 0
        tensors = [torch.randn(s, requires_grad=True) for s in problem.shapes()[start:]]
        init = [torch.randn(t.shape) for t in tensors] if net.delta else []
        args = ([torch.randn(tokens, problem.in_features, requires_grad=x_grad)] if tokens else []) + tensors + init
        real = measure.saved_bytes(plan.program, args, exclude=tensors + init)
        predicted = plan.saved_bytes()
        assert abs(predicted - real) <= 0.05 * max(real, 1), (optimize, predicted, real, plan.source())


def test_measure_helpers_run():
    a = torch.randn(32, 16, requires_grad=True)
    b = torch.randn(16, 8)
    fn = lambda p, q: p @ q
    assert measure.saved_bytes(fn, [a, b], exclude=[a]) == 16 * 8 * 4
    (t,) = measure.time_forward_backward([fn], [[a, b]], repeat=2)
    assert t > 0
    assert measure.peak_bytes(fn, [a, b]) >= 32 * 8 * 4


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_search_objective_and_floor_agree_with_the_step_cost(device):
    """The search's inlined objective equals StepCost.objective, and cost.step_floor never exceeds it."""
    from tn_peft.planner.cost import step_floor
    from tn_peft.planner.cost.scorer import Scorer

    model = CostModel.for_device(device)
    floor = step_floor(model, 4)
    checked = 0
    graphs = [load_graph(name) for name in ("ttd", "quanta", "svd", "lotr", "kron")] + [load_graph("tt", cores=6)]
    for graph in graphs:
        for tokens in (None, 1, 4096):
            problem = Problem.from_network(graph, 4096, 4096, tokens=tokens)
            scorer = Scorer(problem, model)
            n = len(problem.operands)
            for s1 in range(1, 1 << n):
                for s2 in range(s1 + 1, 1 << n):
                    if s1 & s2:
                        continue
                    step = scorer.pair(s1, s2)
                    exact = scorer.objective(s1, s2)
                    assert exact == pytest.approx(step.objective(model), rel=1e-12)
                    la, lb = scorer.legs_mask(s1), scorer.legs_mask(s2)
                    grads = bool(s1 & scorer.grad_mask) + bool(s2 & scorer.grad_mask)
                    assert floor(scorer.size(la), scorer.size(lb), scorer.size(la & lb), grads) <= exact
                    checked += 1
    assert checked > 1000


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_one_step_formula_gives_numbers_and_arrays_alike(device):
    # cost.step writes each step's arithmetic once: run on Python numbers (the scalar scorer) and on
    # numpy arrays (the batch scorer) it must agree to the last bit, copies and fresh pages included
    import random

    import numpy as np

    from tn_peft.planner.cost.step import ARRAY, SCALAR, broadcast_step, matmul_step

    model, rng = CostModel.for_device(device), random.Random(0)
    rows = []
    for _ in range(300):
        m, n, k, batch = (2 ** rng.randint(0, 14) for _ in range(4))
        flags = [rng.random() < 0.5 for _ in range(6)]
        rows.append((m * k * batch, n * k * batch, m * n * batch, m * n * k * batch, m, n, k, *flags))
    columns = [np.array(col) for col in zip(*rows)]
    for i in (7, 8):  # grad flags: 0/1 integers, so that they add up
        columns[i] = columns[i].astype(np.int64)
    matmul = [np.asarray(t, dtype=np.float64) for t in matmul_step(model, 4, ARRAY)(*columns)]
    picks = (0, 1, 2, 3, 7, 8, 9, 10)
    broadcast = [np.asarray(t, dtype=np.float64) for t in broadcast_step(model, 4, ARRAY)(*(columns[i] for i in picks))]
    for r, row in enumerate(rows):
        assert matmul_step(model, 4, SCALAR)(*row) == tuple(float(t[r]) for t in matmul)
        assert broadcast_step(model, 4, SCALAR)(*(row[i] for i in picks)) == tuple(float(t[r]) for t in broadcast)
