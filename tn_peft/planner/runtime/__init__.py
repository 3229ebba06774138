"""What runs a plan's program: dispatch, fused kernels, and the namespace generated source runs in.

:mod:`.dispatch` (token-aware plan families, per-call lookup, the per-process caches and
``running_plan``), :mod:`.fused` (which problems run as one fused kernel on CUDA),
:mod:`.triton_kernels` (those kernels) and :mod:`.namespace` (``apply_circuit`` and the names a
compiled program sees). Nothing here searches trees or emits source (see :mod:`..choose`,
:mod:`..lower`).
"""
