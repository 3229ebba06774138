"""tn_peft.graph.sizes on its own: expressions of parameters and legs, balanced factors of in/out, the errors."""

from __future__ import annotations

import pytest

from tn_peft.errors import SpecError
from tn_peft.graph.sizes import resolve_sizes
from tn_peft.graph.spec import network_from_spec


def _net(nodes, sizes=None, params=None, open_legs=None):
    spec = {"name": "t", "params": params or {"rank": 4}, "open": open_legs or {"out": "out", "in": "in"},
            "sizes": sizes or {}, "nodes": nodes}
    return network_from_spec(spec)


def test_expressions_of_params_and_other_legs():
    net = _net([{"name": "A", "kind": "dense", "legs": ["out", "k"]}, {"name": "B", "kind": "dense", "legs": ["k", "j"]},
                {"name": "C", "kind": "dense", "legs": ["j", "in"]}], sizes={"k": "rank * 2", "j": "k + 1"})
    assert resolve_sizes(net, 12, 10) == {"out": 10, "in": 12, "k": 8, "j": 9}


def test_balanced_factors_of_open_legs():
    net = _net([{"name": "A", "kind": "dense", "legs": ["o1", "o2", "i1", "i2"]}],
               open_legs={"out": ["o1", "o2"], "in": ["i1", "i2"]})
    sizes = resolve_sizes(net, 64, 36)
    assert sizes["o1"] * sizes["o2"] == 36 and sizes["i1"] * sizes["i2"] == 64
    assert {sizes["o1"], sizes["o2"]} == {6} and {sizes["i1"], sizes["i2"]} == {8}


@pytest.mark.parametrize("sizes,message", [
    ({"k": "rank - 4"}, "k"),                 # zero
    ({"k": "rank / 3"}, "k"),                 # not an integer
    ({"k": "nope + 1"}, "nope"),              # undefined name
])
def test_bad_sizes_name_the_leg_or_name(sizes, message):
    net = _net([{"name": "A", "kind": "dense", "legs": ["out", "k"]}, {"name": "B", "kind": "dense", "legs": ["k", "in"]}],
               sizes=sizes)
    with pytest.raises(SpecError, match=message):
        resolve_sizes(net, 8, 8)


def test_factors_that_cannot_fit_are_an_error():
    net = _net([{"name": "A", "kind": "dense", "legs": ["o1", "o2", "in"]}], sizes={"o1": 3},
               open_legs={"out": ["o1", "o2"], "in": "in"})
    with pytest.raises(SpecError, match="o1|o2|out"):
        resolve_sizes(net, 8, 10)   # 10 is not a multiple of 3
