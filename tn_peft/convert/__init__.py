"""Conversion between PEFT LoRA checkpoints and tn_peft's canonical (unitary) forms.

- :func:`from_lora`: LoRA folder -> tn_peft adapter folder (``svd`` exact, ``pauli`` a fit, ``tt``/``ttd``);
- :func:`to_lora`: tn_peft adapter folder -> PEFT LoRA folder (truncated SVD of dW);
- :func:`inspect_dir`: describe either kind of folder.

The math lives in :mod:`.linalg` and :mod:`.tt` (pure functions on tensors), PEFT file I/O in
:mod:`.lora_io`.
"""

from .from_lora import from_lora  # noqa: E402,F401  (the function shadows its module name on purpose)
from .inspect import format_inspection, inspect_dir  # noqa: E402,F401
from .linalg import lora_to_svd, svd_to_lora  # noqa: E402,F401
from .lora_io import read_lora  # noqa: E402,F401
from .report import ConversionReport, LayerReport  # noqa: E402,F401
from .to_lora import to_lora  # noqa: E402,F401

__all__ = ["from_lora", "to_lora", "inspect_dir", "format_inspection", "read_lora", "lora_to_svd", "svd_to_lora",
           "ConversionReport", "LayerReport"]
