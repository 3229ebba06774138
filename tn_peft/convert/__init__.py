"""Conversion between PEFT LoRA checkpoints and tn_peft's canonical (unitary) forms.

- :func:`from_lora`: LoRA folder -> tn_peft adapter folder (``svd`` exact, ``pauli`` a fit, ``tt``/``ttd``);
- :func:`to_lora`: tn_peft adapter folder -> PEFT LoRA folder (truncated SVD of dW);
- :func:`inspect_dir`: describe either kind of folder.

The math lives in :mod:`.linalg` and :mod:`.tt` (pure functions on tensors), PEFT file I/O in
:mod:`.lora_io`.
"""
