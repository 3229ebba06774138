"""Conversion between PEFT LoRA checkpoints and tn_peft's canonical (unitary) forms.

- :func:`from_lora`: LoRA folder -> tn_peft adapter folder (``svd`` exact, ``pauli`` a fit, ``tt``/``ttd``);
- :func:`to_lora`: tn_peft adapter folder -> PEFT LoRA folder (truncated SVD of dW);
- :func:`inspect_dir`: describe either kind of folder.

The math lives in :mod:`.linalg` and :mod:`.tt` (pure functions on tensors), PEFT file I/O in
:mod:`.lora_io`.
"""

from .from_lora import from_lora
from .inspect import format_inspection, inspect_dir
from .linalg import lora_to_svd, svd_to_lora
from .lora_io import read_lora
from .report import ConversionReport, LayerReport
from .to_lora import to_lora

__all__ = [
           "ConversionReport",
           "LayerReport",
           "format_inspection",
           "from_lora",
           "inspect_dir",
           "lora_to_svd",
           "read_lora",
           "svd_to_lora",
           "to_lora",
]
