import pytest

from tn_peft.graph.expressions import ExpressionError, evaluate, expand, substitute


def test_arithmetic_and_layer_sizes():
    assert evaluate("2 * rank + in - out // 2", {"rank": 4, "in": 10, "out": 6}) == 15
    assert evaluate("min(rank, in)", {"rank": 4, "in": 3}) == 3
    assert evaluate(7, {}) == 7


def test_undefined_name_is_named():
    with pytest.raises(ExpressionError, match="'rnk' is not defined"):
        evaluate("rnk * 2", {"rank": 4})


def test_no_python_beyond_arithmetic():
    with pytest.raises(ExpressionError):
        evaluate("__import__('os')", {})
    with pytest.raises(ExpressionError):
        evaluate("rank.real", {"rank": 4})


def test_templates_keep_types():
    assert substitute("r{i-1}", {"i": 3}) == "r2"
    assert substitute("{map}", {"map": "exp"}) == "exp"
    assert substitute("{layers}", {"layers": 2}) == 2


def test_loops_and_conditions():
    assert [v for v, _ in expand("m{i} for i in 1..3", {})] == ["m1", "m2", "m3"]
    assert [v for v, _ in expand("g{i}{j} for i in 1..3, j in i+1..3", {})] == ["g12", "g13", "g23"]
    assert [v for v, _ in expand("r{i} if i < n", {"i": 2, "n": 3})] == ["r2"]
    assert [v for v, _ in expand("r{i} if i < n", {"i": 3, "n": 3})] == []
    assert [v for v, _ in expand("x{i} for i in 1..n if i != 2", {"n": 3})] == ["x1", "x3"]
    assert [v for v, _ in expand("m{i} for i in 1..0", {})] == []
