"""The torch-free kind table agrees with the classes, and a built-in class cannot drift from it."""

from __future__ import annotations

import pytest

from tn_peft.errors import SpecError
from tn_peft.nodes import base
from tn_peft.nodes.kinds import BUILTIN_KINDS, check_options, kind_info


@pytest.mark.parametrize("kind", sorted(BUILTIN_KINDS))
def test_each_row_is_its_class(kind):
    cls = base.node_kind(kind)
    info = BUILTIN_KINDS[kind]
    assert cls.__module__ == info.module
    assert cls.option_names() == info.options
    assert issubclass(cls, base.StiefelNode) == info.stiefel


def test_a_class_whose_options_differ_from_its_row_fails_at_definition(monkeypatch):
    monkeypatch.setitem(base.BUILTIN_KINDS, "probe_kind", type(BUILTIN_KINDS["dense"])({"x": 1}, False, __name__))
    with pytest.raises(TypeError, match="probe_kind.*change both together"):
        class Probe(base.Node, kind="probe_kind"):
            def __init__(self, name, legs, shape, *, x=2):
                super().__init__(name, legs, shape)
    assert "probe_kind" not in base.REGISTRY


def test_a_registered_kind_is_read_from_its_class():
    class Scaled(base.Node, kind="test_kinds_scaled"):
        def __init__(self, name, legs, shape, *, gain=1.0):
            super().__init__(name, legs, shape)

    try:
        assert kind_info("test_kinds_scaled").options == {"gain": 1.0}
        check_options("test_kinds_scaled", {"gain": 2.0})
        with pytest.raises(SpecError, match="has no option 'colour'.*gain"):
            check_options("test_kinds_scaled", {"colour": 1}, node="n")
    finally:
        base.REGISTRY.pop("test_kinds_scaled")


def test_an_unknown_kind_lists_the_known_ones():
    with pytest.raises(SpecError, match="unknown node kind 'dens'.*dense.*pauli"):
        kind_info("dens", node="A")
