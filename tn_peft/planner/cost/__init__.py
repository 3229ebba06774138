"""The cost model: FLOPs, bytes moved, what autograd keeps, and a predicted time, per pairwise step.

Every step of a plan is a pairwise contraction ``C = contract(A, B)`` done as one matmul (or a
broadcast multiply when nothing is summed: diagonal scalings, outer products). For such a step

- forward flops: ``2 * prod(legs of A | B)`` (``prod`` for a broadcast multiply);
- backward flops: the same again for each of A, B that needs a gradient (``dA = dC . B``);
- saved for backward: autograd keeps ``A`` when B needs a gradient and ``B`` when A does
  (``mm``/``bmm``/``mul`` save exactly the inputs the other gradient needs); node tensors are
  alive anyway, so only the activations ``x`` and intermediates count;
- predicted time: ``ops * overhead + max(flops / (rate * eff), bytes / bandwidth) + fresh / alloc``,
  forward and backward together, where ``eff = d / (d + half_dim)`` for the smallest matmul
  dimension ``d`` and ``fresh`` counts bytes of new tensors at least ``alloc_threshold`` big (on
  this kind of CPU machine every such allocation page-faults anew: about 1 GB/s).

The objective the search minimizes is ``time + memory_weight * saved_bytes``, in units of flops at
the profile's peak rate (``objective = seconds * flop_rate``): time first, memory as a tie-break.
Costs are additive over steps, so a subset dynamic programme under this cost is exact.

Modules: :mod:`.model` (the constants, :class:`CostModel`, and :class:`StepCost`), :mod:`.step`
(one step's arithmetic, written once for numbers and numpy arrays), :mod:`.scorer` (the step
costs of operand subsets, one pair at a time) and :mod:`.batch_scorer` (many pairs in one numpy pass).
"""

from .model import CostModel, StepCost
from .step import circuit_cost, pair_cost, step_floor

__all__ = ["CostModel", "StepCost", "circuit_cost", "pair_cost", "step_floor"]
