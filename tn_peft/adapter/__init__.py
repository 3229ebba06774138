"""A Network built for one layer shape: :class:`~tn_peft.adapter.adapter.Adapter` (an ``nn.Module`` whose
``delta_weight()`` is dW, applied through the planner's program) and :mod:`.batching` (same-kind nodes
of many adapters in one call).
"""
