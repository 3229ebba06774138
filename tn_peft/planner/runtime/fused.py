"""Which problems run as one fused Triton kernel (:mod:`.triton_kernels`) on CUDA.

:func:`fused_program` returns a function with a plan program's signature ``(x, *node tensors) -> y``
when the problem is

- a low-rank chain: two matrices sharing one bond leg, one open leg each, optionally a diagonal on
  the bond (LoRA ``B[out, r] A[r, in]``, canonical SVD ``U diag(s) V^T``) -> ``lowrank``;
- per-wire maps: every in-leg of x leads through a chain of two-leg tensors (and diagonals) to one
  out-leg, with no bond between wires (Kronecker ``A (x) (Ba Bb)``) -> ``kron_rows``;

and None otherwise (the plan's program runs). Each returned program names its kernel in ``.kernel``;
:meth:`~..plan.Plan.run_as` records it in the plan's decisions and source. When a plan applies both circuits of a Quantum-PEFT
chain gate by gate, :func:`fused_gated_program` runs x -> V -> s -> U in one launch instead
(``circuit_chain``); a plan applying one circuit gate by gate runs its own program, whose circuit
step is one kernel (``circuit_rows``). No triton is needed to decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .triton_kernels import circuit_chain, kron_rows, lowrank

#: The widest row state (entries) a per-wire program keeps per row; wider problems use the plan.
MAP_MAX_WIDTH = 1 << 14


def _wire_program(problem) -> Callable | None:
    """Per-wire maps (see :func:`fused_program`), or None."""
    ops = problem.operands[1:]
    ins, outs = problem.in_legs, problem.out_legs
    if len(ins) < 2 or len(ins) != len(outs) or any(op.kind not in ("tensor", "diagonal") for op in ops):
        return None
    if any(op.kind == "tensor" and len(op.legs) != 2 for op in ops):
        return None
    holders: dict[str, list[int]] = {}
    diags: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for leg in op.legs:
            (diags if op.kind == "diagonal" else holders).setdefault(leg, []).append(i)
    chains: list[list[tuple[int, str]]] = []   # per wire (x's leg order): (operand, "mat"/"matT"/"diag")
    ends: list[str] = []
    for leg in ins:
        chain = [(i, "diag") for i in diags.get(leg, [])]
        prev = None
        while leg not in outs:
            around = holders.get(leg, [])
            if len(around) != (1 if prev is None else 2):   # open legs: one factor; bonds: two
                return None
            (i,) = [j for j in around if j != prev]
            a, b = ops[i].legs
            chain.append((i, "mat" if b == leg else "matT"))  # stored (out, in) or (in, out)
            leg = a if b == leg else b
            if leg in ins:
                return None
            chain += [(j, "diag") for j in diags.get(leg, [])]
            prev = i
        if len(holders.get(leg, [])) != 1:
            return None
        chains.append(chain)
        ends.append(leg)
    seen = [i for chain in chains for i, _ in chain]
    if sorted(seen) != list(range(len(ops))) or sorted(ends) != sorted(outs):
        return None
    # Schedule: maps on different wires commute; take the map that shrinks the state most first.
    sizes = problem.size_dict
    dims = [sizes[leg] for leg in ins]
    width = widest = math.prod(dims)
    legs_in = list(ins)
    steps: list[tuple[int, int, str]] = []
    heads = [0] * len(chains)
    while len(steps) < len(seen):
        def ratio(w):
            i, kind = chains[w][heads[w]]
            if kind == "diag":
                return 1.0
            a, b = ops[i].legs
            d_out = sizes[a] if kind == "mat" else sizes[b]
            return d_out / dims[w]
        w = min((w for w in range(len(chains)) if heads[w] < len(chains[w])), key=ratio)
        i, kind = chains[w][heads[w]]
        heads[w] += 1
        if kind != "diag":
            a, b = ops[i].legs
            legs_in[w] = a if kind == "mat" else b
            width = width // dims[w] * sizes[legs_in[w]]
            dims[w] = sizes[legs_in[w]]
            widest = max(widest, width)
        steps.append((w, i, kind))
    if widest > MAP_MAX_WIDTH:
        return None
    in_dims = [sizes[leg] for leg in ins]
    perm = [ends.index(leg) for leg in outs]
    scale = problem.scale

    def program(x, *tensors):
        maps = []
        for w, i, kind in steps:
            t = tensors[i]
            maps.append((w, t if kind == "mat" else t.t() if kind == "matT" else torch.diag(t)))
        return kron_rows(x, in_dims, maps, scale, perm)

    program.kernel = "kron_rows"
    return program


# ------------------------------------------------------------------------ dispatch
def fused_program(problem) -> Callable | None:
    """A fused kernel program ``(x, *node tensors) -> y`` for a low-rank chain or per-wire maps, else None.

    Chains: two matrices sharing one bond leg k with one open leg each (LoRA ``B[out, r] A[r, in]``,
    ``U[out, k] V[in, k]``), optionally a diagonal on k (``U diag(s) V^T``).
    Per-wire maps (two or more wires): every node tensor has two legs and lies on the path of one
    wire from its in leg to an out leg (Kronecker ``A[m1, n1] (x) (Ba[m2, r] Bb[r, n2])``), no bond
    joins two wires, and diagonals sit on legs of those paths.
    """
    if not problem.has_x:
        return None
    if len(problem.out_legs) != 1 or len(problem.in_legs) != 1:
        return _wire_program(problem)
    chain = _chain(problem)
    if chain is None:
        return None
    iu, iv, i_s, u_t, v_t = chain
    scale = problem.scale

    def program(x, *tensors):
        um = tensors[iu].t() if u_t else tensors[iu]
        vm = tensors[iv].t() if v_t else tensors[iv]
        s = tensors[i_s] if i_s is not None else None
        return lowrank(x, vm, s, um, scale)

    program.kernel = "lowrank"
    return program


def fused_gated_program(problem) -> tuple[Callable, frozenset[int]] | None:
    """``(program, gated)`` when ``problem`` is a chain x -> V -> (s) -> U whose U and V are both
    circuits (Quantum-PEFT): applied gate by gate, ``gated`` (their node positions), the program
    runs both circuits and the scaling in one launch (:func:`~.triton_kernels.circuit_chain`); the
    caller passes the circuit node modules at those positions. Else None."""
    if not problem.has_x or len(problem.out_legs) != 1 or len(problem.in_legs) != 1:
        return None
    chain = _chain(problem)
    if chain is None:
        return None
    iu, iv, i_s, u_t, v_t = chain
    ops = problem.operands[1:]
    if u_t or v_t or ops[iu].kind != "circuit" or ops[iv].kind != "circuit":
        return None
    scale = problem.scale
    k = problem.size_dict[ops[iu].legs[-1]]

    ones: dict[tuple, torch.Tensor] = {}  # s = 1 when the chain has no diagonal, made once per dtype/device

    def program(x, *tensors):
        if i_s is not None:
            s = tensors[i_s]
        else:
            s = ones.get((x.dtype, x.device))
            if s is None:
                s = ones[(x.dtype, x.device)] = torch.ones(k, dtype=x.dtype, device=x.device)
        return circuit_chain(x, tensors[iv], s, tensors[iu], scale)

    program.kernel = "circuit_chain"
    return program, frozenset((iu, iv))


def _chain(problem) -> tuple[int, int, int | None, bool, bool] | None:
    """``(U, V, s, U stored (k, out), V stored (k, in))`` node positions and layouts of a low-rank
    chain ``U[out, k] diag(s) V[in, k]^T`` (s optional), or None."""
    ops = problem.operands[1:]
    mats = [(i, op) for i, op in enumerate(ops) if op.kind in ("tensor", "circuit")]
    diags = [(i, op) for i, op in enumerate(ops) if op.kind == "diagonal"]
    if len(mats) != 2 or len(diags) > 1 or len(ops) != len(mats) + len(diags):
        return None
    out_leg, in_leg = problem.out_legs[0], problem.in_legs[0]
    (iu, u), (iv, v) = sorted(mats, key=lambda m: out_leg not in m[1].legs)
    if out_leg not in u.legs or in_leg not in v.legs or len(u.legs) != 2 or len(v.legs) != 2:
        return None
    k_u = next(leg for leg in u.legs if leg != out_leg)
    k_v = next(leg for leg in v.legs if leg != in_leg)
    if k_u != k_v or (diags and diags[0][1].legs != (k_u,)):
        return None
    return iu, iv, (diags[0][0] if diags else None), u.legs.index(out_leg) == 1, v.legs.index(in_leg) == 1
