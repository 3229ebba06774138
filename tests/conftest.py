"""Shared test settings: deterministic torch, two threads (the CI machine has two cores)."""

import pytest
import torch

from tn_peft.testing import load_profile

torch.set_num_threads(2)
load_profile("ci")  # tn_peft.testing's profiles: ci (derandomized, no deadline, 25 examples) or HYPOTHESIS_PROFILE=thorough


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
