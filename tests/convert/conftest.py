"""Session fixtures for conversion tests (models are built once)."""

import pytest
from convert_helpers import minilm, tiny_gpt2, tiny_llama


@pytest.fixture(scope="session")
def gpt2_base():
    return tiny_gpt2()


@pytest.fixture(scope="session")
def llama_base():
    return tiny_llama()


@pytest.fixture(scope="session")
def minilm_base():
    return minilm()
