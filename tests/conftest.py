"""Shared test settings: deterministic torch, two threads (the CI machine has two cores)."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(2)
settings.register_profile("ci", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
