"""tn_peft.model.layers' table of supported layer types on its own: dispatch, shape rule, refusal."""

from __future__ import annotations

import re

import pytest
from torch import nn
from transformers.pytorch_utils import Conv1D

from tn_peft.errors import SpecError
from tn_peft.model.layers import (
    LAYER_TYPES,
    TnConv1D,
    TnConv2d,
    TnLinear,
    find_layer_type,
    is_linear,
    layer_info,
    layer_type,
)


class _QuantizedLike(nn.Linear):
    """Stands in for bitsandbytes' Linear4bit / Linear8bitLt, which subclass nn.Linear."""


def test_the_table_has_one_row_per_type():
    assert [row.name for row in LAYER_TYPES] == ["linear", "conv1d", "conv2d"]
    assert [row.layer_class for row in LAYER_TYPES] == [TnLinear, TnConv1D, TnConv2d]
    assert [row.all_linear for row in LAYER_TYPES] == [True, True, False]


@pytest.mark.parametrize("module,cls,info", [
    (nn.Linear(8, 4), TnLinear, ("linear", 4, 8)),
    (_QuantizedLike(8, 4), TnLinear, ("linear", 4, 8)),
    (Conv1D(12, 5), TnConv1D, ("conv1d", 12, 5)),  # weight stored (in=5, out=12)
    (nn.Conv2d(2, 3, kernel_size=(3, 2)), TnConv2d, ("conv2d", 3, 2 * 3 * 2)),
    (nn.Conv2d(4, 6, kernel_size=3, groups=2), TnConv2d, ("conv2d", 6, 2 * 3 * 3)),
])
def test_dispatch_and_shape_rule(module, cls, info):
    assert layer_type(module).layer_class is cls
    assert layer_info(module) == info
    wrapped = layer_type(module).layer_class(module)
    assert type(wrapped) is cls and wrapped.base_layer is module
    assert layer_info(wrapped) == info  # a wrapped layer is its base's type, with the same shape
    assert (wrapped.out_features, wrapped.in_features) == info[1:]
    assert is_linear(module) is is_linear(wrapped) is (info[0] != "conv2d")


def test_unsupported_type_is_one_error_naming_the_module_and_the_supported_types():
    emb = nn.Embedding(10, 4)
    assert find_layer_type(emb) is None and not is_linear(emb)
    message = ("module 'block.emb' is a torch.nn.modules.sparse.Embedding, which tn_peft cannot adapt "
               "(it adapts nn.Linear, transformers' Conv1D and nn.Conv2d)")
    for call in (layer_type, layer_info):
        with pytest.raises(SpecError, match="^" + re.escape(message)) as err:
            call(emb, "block.emb")
        assert "exclude_modules" in err.value.fix
