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
"""

from .choose import make_plan
from .cost import CostModel, StepCost
from .plan import Plan
from .problem import TOKENS, Operand, Problem

__all__ = ["TOKENS", "CostModel", "Operand", "Plan", "Problem", "StepCost", "make_plan"]
