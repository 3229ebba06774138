"""The contraction planner: optimal, autograd-aware plans for ``dW`` and ``x @ dW^T``.

    from tn_peft.planner import Problem, make_plan
    plan = make_plan(Problem.from_network(net, in_features, out_features, tokens=T))
    print(plan.tree(), plan.decisions, plan.flops(), plan.saved_bytes())
    print(plan.source())
    y = plan(x, *node_tensors)

Modules: :mod:`.problem` (what is contracted), :mod:`.cost` (the cost model, the step
costs of operand subsets), :mod:`.search` (one search algorithm per module, picked by name),
:mod:`.choose` (candidate trees, ``make_plan``), :mod:`.plan` (the ``Plan`` object), :mod:`.lower`
(a plan's trees -> its program's source, driving :mod:`.emit`, the generated torch code per step),
:mod:`.runtime` (what runs programs: :mod:`.runtime.dispatch` token-aware plan families and
per-call lookup, :mod:`.runtime.fused` which problems run as :mod:`.runtime.triton_kernels` on
CUDA, :mod:`.runtime.namespace` the names a program runs with), :mod:`.measure` (what torch
really does), :mod:`.calibrate` (measuring a machine's constants), :mod:`.cli` (``tn-peft plan``).
The reference contraction the plans are tested against: :func:`tn_peft.testing.reference_contraction`.

Vocabulary (one meaning per word):

- plan: a :class:`Plan`, a contraction order plus its emitted program; "to plan" is to make one.
- branch: one tree over one problem (a plan has one, a ``delta`` plan two: theta's, theta_0's).
- family: the plans of one problem over token counts (:class:`~.runtime.dispatch.PlanFamily`).
- path: a tree as SSA ``(i, j)`` pairs; step ``s`` makes id ``n + s``.
- operand: x or a node tensor of the problem, by index in operand order (x first when present).
- node: an operand other than x; node positions count from 0 without x.
- gate: one gate of a circuit; gated: the circuit operands a tree applies gate by gate
  (``Branch.gated``, operand indices), gated nodes: the same as node positions (``Plan.gated_nodes``).
- passes: a circuit's count of state passes (``Operand.passes``).
- search: an algorithm finding a tree (:mod:`.search`); exact: our optimum of the objective
  (``optimize="auto"``); "optimal": opt_einsum's FLOP-optimal tree (an ``optimize=`` name).
- lower: turn a plan's trees into its program's source (:mod:`.lower`); emit: write one step's code.
- program: the compiled function a plan runs; kernel: a fused Triton program that replaces one.
"""

from .choose import make_plan
from .cost import CostModel, StepCost
from .plan import Plan
from .problem import TOKENS, Operand, Problem

__all__ = ["TOKENS", "CostModel", "Operand", "Plan", "Problem", "StepCost", "make_plan"]
