"""tn_peft.errors: one exception type per layer; SpecError for specs and configs, UsageError for misuse."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tn_peft
from tn_peft.errors import SpecError, TnPeftError, UsageError


def test_usage_error_is_a_value_error_and_no_spec_error():
    err = UsageError("adapter 'b' is active", fix="set_adapter() other ones first")
    assert isinstance(err, TnPeftError) and isinstance(err, ValueError) and not isinstance(err, SpecError)
    assert str(err) == "adapter 'b' is active Fix: set_adapter() other ones first" and err.fix.startswith("set_")
    assert tn_peft.UsageError is UsageError and "UsageError" in tn_peft.__all__


def _model():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    return tn_peft.get_model(model, tn_peft.AdapterConfig(graph="lora", target_modules=["0", "1"]))


def test_runtime_misuse_is_a_usage_error_and_a_bad_config_a_spec_error():
    model = _model()
    with pytest.raises(UsageError, match="already exists"):
        model.add_adapter("default", tn_peft.AdapterConfig(graph="lora", target_modules=["0"]))
    with pytest.raises(UsageError, match="for inference, and the model is in training mode"):
        model(torch.randn(2, 8), adapter_names=["default", "default"])
    with pytest.raises(UsageError, match="is active"):
        model.delete_adapter("default")
    with pytest.raises(SpecError, match="matched no module"):
        model.add_adapter("other", tn_peft.AdapterConfig(graph="lora", target_modules=["nope"]))


def test_sharding_without_torch_distributed_is_a_usage_error():
    from tn_peft.model.distributed import shard

    if torch.distributed.is_available() and torch.distributed.is_initialized():  # pragma: no cover
        pytest.skip("torch.distributed is initialized in this process")
    with pytest.raises(UsageError, match="needs torch.distributed initialized"):
        shard(_model())
