"""Fixtures for model-integration tests."""

import pytest
from model_helpers import base_model


@pytest.fixture(params=["minilm", "gpt2", "llama"])
def kind(request):
    return request.param


@pytest.fixture
def base(kind):
    return base_model(kind)
