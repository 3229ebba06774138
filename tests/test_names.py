"""tn_peft.names: the one rule for every name a spec gives."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

import tn_peft
from tn_peft import SpecError
from tn_peft.names import check_graph_name, check_name, graph_name_from_stem, is_name


@pytest.mark.parametrize("name", ["r", "out", "in", "U1", "_k", "a" * 64, "lambda"])
def test_identifiers_are_names(name):
    assert check_name(name, "leg name") == name


@pytest.mark.parametrize("name", ["", "1r", "a.b", "r\n", "é", "a" * 65, " r", "r-s", 3, None])
def test_anything_else_is_one_spec_error_showing_the_value(name):
    with pytest.raises(SpecError, match="leg name .* is not a name") as caught:
        check_name(name, "leg name", source="g.yaml")
    assert str(caught.value).startswith("g.yaml: ") and "\n" not in str(caught.value)


@given(st.text(max_size=80))
def test_is_name_is_the_ascii_identifier_rule(text):
    assert is_name(text) == (text.isascii() and text.isidentifier() and len(text) <= 64)


def test_graph_names_may_hold_dashes_and_dots_and_stems_become_names():
    assert check_graph_name("my-graph.v2") == "my-graph.v2"
    with pytest.raises(SpecError, match="is not a graph name"):
        check_graph_name("my graph")
    assert graph_name_from_stem("my graph (copy)") == "my_graph__copy_"
    assert graph_name_from_stem("2024-run") == "g_2024-run"


def test_a_network_edited_after_it_was_built_is_checked_again():
    net = tn_peft.load_graph("lora")
    net.nodes[0].legs = ("out", "r\nimport os")
    with pytest.raises(SpecError, match="is not a name"):
        net.build(4, 4)
    with pytest.raises(SpecError, match="is not a name"):
        tn_peft.Network("g", sizes={"r s": 2})
