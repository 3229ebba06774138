"""tn_peft.limits: every bound on what a spec can make tn_peft do is refused, by name, before the work."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tn_peft import SpecError, limits, load_graph
from tn_peft.graph.expressions import ExpressionError, evaluate, expand

PACKAGE = Path(__file__).resolve().parents[1] / "tn_peft"


@pytest.mark.parametrize("text,message", [
    ("10 ** 10 ** 10", "wider than 64 bits"),
    ("2 ** 64", "wider than 64 bits"),
    ("(2 ** 40) * (2 ** 40)", "wider than 64 bits"),
    ("'a' * 10 ** 9", "arithmetic takes numbers"),
    ("2.0 ** 10000", "out of range"),
])
def test_expressions_refuse_unbounded_arithmetic(text, message):
    with pytest.raises(ExpressionError, match=message):
        evaluate(text, {})


def test_expressions_within_the_bounds():
    assert evaluate("2 ** 63", {}) == 2**63 and evaluate("(2 ** 40) * (2 ** 20)", {}) == 2**60
    assert evaluate("(-2) ** 3", {}) == -8 and evaluate("2 ** -1", {}) == 0.5


def test_a_loop_expands_to_at_most_max_loop_iterations():
    assert len(expand("m{i} for i in 1..10000", {})) == limits.MAX_LOOP_ITERATIONS
    with pytest.raises(ExpressionError, match="MAX_LOOP_ITERATIONS"):
        expand("m{i} for i in 1..100000000", {})
    with pytest.raises(ExpressionError, match="MAX_LOOP_ITERATIONS"):
        expand("g{i}_{j} for i in 1..1000, j in 1..1000", {})


def _write(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_spec_files_are_bounded(tmp_path):
    with pytest.raises(SpecError, match="MAX_SPEC_BYTES"):
        load_graph(_write(tmp_path, "name: x\n" + "# padding\n" * 120_000))
    with pytest.raises(SpecError, match="MAX_SPEC_DEPTH"):
        load_graph(_write(tmp_path, "[" * 5000 + "]" * 5000))
    with pytest.raises(SpecError, match="MAX_SPEC_DEPTH"):
        load_graph(_write(tmp_path, "name: x\ndescription: " + "[" * 40 + "]" * 40 + "\n"))
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcd", "bcde"))
    with pytest.raises(SpecError, match="MAX_SPEC_ITEMS"):
        load_graph(_write(tmp_path, laughs + "name: x\n"))


def test_a_network_is_bounded_in_nodes_and_node_size(tmp_path):
    many = "name: x\nparams: {n: 9000}\nnodes:\n  - {name: 'A{i}', for: 'i in 1..n', kind: diagonal, legs: ['l{i}']}\n"
    with pytest.raises(SpecError, match="node 'A\\{i\\}': expands to more than 4,096 nodes"):
        load_graph(_write(tmp_path, many))
    with pytest.raises(SpecError, match="leg 'r'.*MAX_INT_BITS"):
        load_graph({"name": "x", "sizes": {"r": "10 ** 10 ** 10"},
                    "nodes": [{"name": "A", "kind": "dense", "legs": ["out", "r"]},
                              {"name": "B", "kind": "dense", "legs": ["r", "in"]}]}).resolve(4, 4)


def test_no_pickle_anywhere_in_the_package():
    """No pickle import, no torch.load without weights_only=True: a checkpoint cannot run code."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "dill", "cloudpickle") for n in names), path
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flags = {k.arg: k.value for k in node.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, \
                    f"{path}:{node.lineno}: torch.load without weights_only=True"
            if isinstance(node, ast.Attribute) and node.attr in ("load", "unsafe_load", "full_load") \
                    and isinstance(node.value, ast.Name) and node.value.id == "yaml":
                call_line = path.read_text().splitlines()[node.lineno - 1]
                assert node.attr == "load" and ("SafeLoader" in call_line or "_LineLoader" in call_line), \
                    f"{path}:{node.lineno}: YAML must be loaded safely"
