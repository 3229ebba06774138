"""Method specs of --compare / --graph: grids of settings, learning-rate grids, peft config fields."""

from __future__ import annotations

import pytest

pytest.importorskip("peft")

from tn_peft.errors import DataError
from tn_peft.apps.finetune.grid import HEAD_LR, compare_rows, graph_rows, parse, peft_fields


def test_parse_and_expand_a_grid():
    assert parse("lora:r=1,2:lr=1e-3", "--compare") == ("lora", {"r": [1, 2], "lr": [1e-3]})
    rows = compare_rows(["lora:r=1,2", "vera:r=256:lr=1e-2,3e-2", "ia3", "head"], tune=True)
    assert [r.label for r in rows] == ["lora r=1 alpha=2", "lora r=2 alpha=4", "vera r=256", "ia3", "head"]
    assert rows[0].lr_grid["lr"] == [1e-3, 3e-3, 1e-2]  # LoRA's tuning grid when the spec gives none
    assert rows[2].settings() == [{"lr": 1e-2, "lr_head": HEAD_LR}, {"lr": 3e-2, "lr_head": HEAD_LR}]
    assert rows[2].given == ("lr",) and rows[3].given == ()
    assert rows[4].kind == "head" and rows[4].settings() == [{"lr_head": HEAD_LR}]


def test_without_tune_each_method_has_one_learning_rate():
    (row,) = compare_rows(["fourierft:n=100"])
    assert row.lr_grid["lr"] == [1e-1]


def test_peft_fields_resolve_short_names():
    assert peft_fields("lora", {"r": 1, "alpha": 2}) == {"r": 1, "lora_alpha": 2}
    assert peft_fields("fourierft", {"n": 100}) == {"n_frequency": 100}
    assert peft_fields("loha", {"alpha": 4}) == {"alpha": 4}


@pytest.mark.parametrize("spec,message", [
    ("nosuch", "not a peft weight-adapter method"),
    ("prefix_tuning", "not a peft weight-adapter method"),
    ("lora:rank=4", "LoraConfig has no field 'rank'"),
    ("lora:r", "is not KEY=VALUE"),
    (":r=1", "no method name"),
    ("ia3:lr=-1", "lr=-1 is not a positive number"),
    ("head:r=2", "head takes only lr_head"),
    ("lora:targets=query++value", "targets='query\\+\\+value' has an empty module name"),
])
def test_bad_specs_are_one_clear_error(spec, message):
    with pytest.raises(DataError, match=message):
        compare_rows([spec])


def test_graph_rows_take_catalog_defaults_and_set_overrides():
    rows = graph_rows(["quantum_peft:layers=1,3", "ttd"], {"rank": 8}, {"quantum_peft": {"layers": 3, "alpha": 8}})
    assert [r.label for r in rows] == ["quantum_peft alpha=8 rank=8 layers=1", "quantum_peft alpha=8 rank=8 layers=3",
                                       "ttd rank=8"]
    assert all(r.kind == "graph" and r.lr_grid["lr_diag"] == [1e-1] for r in rows)
    (row,) = graph_rows(["examples/pauli_left_dense_right.yaml:lr=1e-2"], {}, {})
    assert row.family == "pauli_left_dense_right" and row.source.endswith(".yaml") and row.lr_grid["lr"] == [1e-2]


def test_a_row_can_name_its_own_targets():
    rows = graph_rows(["quantum_peft:targets=query+value,query+key+value+attention.output.dense"], {},
                      {"quantum_peft": {"layers": 3}})
    assert [r.targets for r in rows] == [("query", "value"), ("query", "key", "value", "attention.output.dense")]
    assert rows[1].label == "quantum_peft layers=3 on query,key,value,attention.output.dense"
    assert "targets" not in rows[0].args  # a row setting, not a graph parameter
    (lora,) = compare_rows(["lora:targets=query+key"])
    assert lora.targets == ("query", "key") and lora.args == {"r": 4, "alpha": 8}
    assert compare_rows(["lora"])[0].targets is None  # --targets then applies
