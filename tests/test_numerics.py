"""Numerics: orthonormality over long training, mixed precision under autocast, and fp64 gradchecks of
every node kind and of the planner's programs."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import tn_peft
from tn_peft.nodes.base import REGISTRY, StiefelNode, create_node, orthonormality_error
from tn_peft.testing import randomize

#: AdamW steps of the long run (the issue's 10,000)
LONG_STEPS = 10_000


@pytest.fixture
def one_thread():
    """Tiny ops in a long loop: one thread (two OpenMP threads on a busy 2-core machine are 10-100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind,options", [("pauli", {"layers": 2}), ("exp", {}), ("cayley", {})])
def test_orthonormality_holds_over_10000_adamw_steps_in_fp32(kind, options, one_thread):
    torch.manual_seed(0)
    node = create_node(kind, "Q", ["n", "k"], (32, 4), options)
    target = torch.randn(32, 4)
    optimizer = torch.optim.AdamW(node.parameters(), lr=3e-2)
    worst = 0.0
    for step in range(LONG_STEPS):
        loss = ((node.matrix() - target) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 1000 == 999:
            worst = max(worst, node.orthonormality_error())
    assert worst < 1e-5, f"{kind}: max |Q^T Q - I| reached {worst:.2e} over {LONG_STEPS} steps"


#: relative error of the adapter's output under autocast against float32, measured on the catalog (x2 margin)
AUTOCAST_RTOL = {torch.bfloat16: 2e-2, torch.float16: 2e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("graph", ["quantum_peft", "lora", "svd", "tt", "ttd", "quanta"])
def test_autocast_runs_matmuls_in_half_precision_and_matches_fp32(graph, dtype):
    adapter = randomize(tn_peft.load_graph(graph).build(64, 48), 0)
    x = torch.randn(5, 64)
    with torch.no_grad():
        reference = adapter(x).double()
        with torch.autocast("cpu", dtype=dtype):
            y = adapter(x)
    assert y.dtype == dtype  # the contraction runs in the autocast dtype ...
    assert all(p.dtype == torch.float32 for p in adapter.parameters())  # ... the parameters stay float32
    err = float((y.double() - reference).abs().max() / reference.abs().max())
    assert err < AUTOCAST_RTOL[dtype], f"{graph} under {dtype}: relative error {err:.2e}"


def _node_cases():
    for kind, options, shape in [("dense", {}, (3, 4)), ("diagonal", {"init": "normal"}, (5,)),
                                 ("exp", {}, (6, 3)), ("exp", {"rank": 2}, (6, 3)), ("cayley", {}, (6, 3)),
                                 ("taylor", {}, (6, 3)), ("householder", {}, (6, 3)), ("givens", {}, (6, 3)),
                                 ("pauli", {"layers": 2}, (8, 3)), ("pauli", {"layers": 1}, (12, 3)),
                                 ("pauli", {"layers": 1, "construction": "csd"}, (7, 2)),
                                 ("pauli", {"layers": 1, "frame": "weight", "init": "random"}, (8, 2))]:
        yield pytest.param(kind, options, shape, id=f"{kind}-{'-'.join(f'{k}={v}' for k, v in options.items())}")


def test_every_registered_kind_is_gradchecked():
    tested = {case.values[0] for case in _node_cases()}
    assert set(REGISTRY) <= tested, f"add a gradcheck case for {sorted(set(REGISTRY) - tested)}"


@pytest.mark.parametrize("kind,options,shape", list(_node_cases()))
def test_gradcheck_of_every_node_kind_in_fp64(kind, options, shape):
    node = create_node(kind, "N", [f"l{i}" for i in range(len(shape))], shape, options).double()
    randomize(node, 1)
    if getattr(node, "frame", "none") != "none":
        node.set_frame(torch.linalg.qr(torch.randn(shape[0], shape[1], dtype=torch.float64))[0])
    names = [n for n, p in node.named_parameters() if p.requires_grad]
    values = tuple(dict(node.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)

    def f(*params):
        return functional_call(node, dict(zip(names, params)), ())

    assert torch.autograd.gradcheck(f, values, eps=1e-6, atol=1e-5)
    if isinstance(node, StiefelNode) and kind != "taylor":  # taylor is orthonormal only approximately
        assert orthonormality_error(node.matrix()) < 1e-10


@pytest.mark.parametrize("graph,args", [("lora", {}), ("quantum_peft", {"layers": 1}), ("svd", {"map": "cayley"}),
                                        ("tt", {"cores": 3}), ("ttd", {}), ("quanta", {}), ("kron", {})])
@pytest.mark.parametrize("tokens", [1, 9])
def test_gradcheck_of_the_planners_programs_in_fp64(graph, args, tokens):
    adapter = randomize(tn_peft.load_graph(graph, **args).build(8, 12, dtype=torch.float64), 2)
    names = [n for n, p in adapter.named_parameters() if p.requires_grad]
    values = tuple(dict(adapter.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)
    x = torch.randn(tokens, 8, dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        return functional_call(adapter, dict(zip(names, params)), (x,))

    # fast mode (random projections of the Jacobian): a TT's hundreds of parameters in seconds, not minutes
    assert torch.autograd.gradcheck(f, (x, *values), eps=1e-6, atol=1e-5, fast_mode=True)
