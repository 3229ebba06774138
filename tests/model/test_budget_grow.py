"""budget_mode: grow (tn_peft.model.budget_grow): growing from depth 0, rank 1 to at most B parameters, dormant units
that change no output, the grown adapter's save and reload, and clear errors."""

import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from budget_helpers import batch, grow_model, hidden, tiny_bert, train_pruned, trainable

from tn_peft import SpecError
from tn_peft.model.budget import allocator_for
from tn_peft.model.budget_grow import BudgetGrower
from tn_peft.model.peft_method import TnPeftConfig


def test_grow_starts_small_and_ends_within_the_budget():
    base = tiny_bert()
    model = grow_model(base, 200)
    grower = allocator_for(model, 20, every=3)
    assert isinstance(grower, BudgetGrower)
    modules = len(grower.modules)
    # the start: every module at depth 0, rank 1 (the initial sublayers' angles and one s each)
    smallest = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".initial")) + modules
    assert grower.start == grower.count() == smallest < 200 < trainable(model)
    optimizer = train_pruned(model, grower, torch.nn.Linear(48, 2), 20)
    assert grower.done and grower.count() == trainable(model) <= 200
    assert trainable(model) > 200 - 2 * 16    # filled up to less than the dearest unit (a qubit-free pair here)
    summary = grower.summary()
    assert summary["mode"] == "grow" and summary["start"] == smallest and summary["final"] == trainable(model)
    counts = [e["count"] for e in summary["events"]]
    assert counts == sorted(counts) and all(e["count"] <= e["target"] for e in summary["events"])
    assert all(e["step"] > grower.warmup for e in summary["events"])
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held >= {id(p) for p in model.parameters() if p.requires_grad}
    assert len(grower.modules) == modules                                     # growing drops no module


@pytest.mark.parametrize("hidden_size", [48, 32])   # mixed-radix (48 = 3 x 16) and qubit (32) circuits
def test_dormant_units_stay_zero_and_change_no_output(hidden_size):
    """A dormant column is s_k = 0 and a dormant pair of layers is D D = I: the adapter rebuilt without them
    computes the same outputs, and training never moves them."""
    base = tiny_bert(hidden_size)
    model = grow_model(base, 400 if hidden_size == 48 else 300, layers=4)
    grower = allocator_for(model, 100, every=3)
    # grows at steps 12 and 15 (warmup 10), far from T - t_f = 70
    optimizer = train_pruned(model, grower, torch.nn.Linear(hidden_size, 2), 16, finish=False)
    for name, state in grower.modules.items():
        adapter = state.layer.tn_adapters["default"]
        assert torch.all(adapter.node("s").values[grower.rank_on[name]:] == 0)
        assert torch.any(adapter.node("s").values[:grower.rank_on[name]] != 0)
        for node in ("U", "V"):
            weights = adapter.node(node).weights
            for i in range(weights.shape[0] // 2):
                if i not in grower.pairs_on[name][node]:
                    assert torch.all(weights[2 * i: 2 * i + 2] == 0)
    assert any(grower.pairs_on[n][c] for n in grower.modules for c in ("U", "V"))   # some depth was added
    model.eval()
    ids, mask, _ = batch(99)
    with torch.no_grad():
        before = hidden(model, ids, mask)
    grower.finish(optimizer)
    assert grower.count() == trainable(model)
    with torch.no_grad():
        torch.testing.assert_close(hidden(model, ids, mask), before, rtol=0, atol=1e-6)


def test_grown_adapter_reloads_through_peft_with_identical_outputs(tmp_path):
    base = tiny_bert()
    model = grow_model(base, 180)
    grower = allocator_for(model, 12, every=3)
    train_pruned(model, grower, torch.nn.Linear(48, 2), 12)
    allocation = grower.allocation()
    assert any(a["out_layers"] or a["in_layers"] for a in allocation.values())
    ids, mask, _ = batch(98)
    with torch.no_grad():
        expected = hidden(model, ids, mask)
    model.save_pretrained(str(tmp_path))
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path), is_trainable=True)
    assert trainable(loaded) == trainable(model) <= 180
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(hidden(loaded, ids, mask), expected, rtol=0, atol=1e-6)


def test_grow_errors_are_clear():
    base = tiny_bert()
    with pytest.raises(SpecError, match="in pairs"):
        allocator_for(grow_model(base, 500, layers=3), 10)
    with pytest.raises(SpecError, match="below the smallest adapter"):
        allocator_for(grow_model(base, 20), 10)
    bad = TnPeftConfig(graph="quantum_peft", graph_args={"budget": 50, "budget_mode": "shrink"}, target_modules=["query"])
    with pytest.raises(SpecError, match="budget_mode must be one of prune, grow"):
        allocator_for(peft.get_peft_model(copy.deepcopy(base), bad), 10)
    # a per-module depth (layer_graph_args) is checked when the grower starts
    odd = TnPeftConfig(graph="quantum_peft", graph_args={"layers": 2, "budget": 500, "budget_mode": "grow"},
                       target_modules=["query", "value"], layer_graph_args={"value": {"in_layers": 1}})
    with pytest.raises(SpecError, match="circuit V of module .*value.* has 1 layers"):
        allocator_for(peft.get_peft_model(copy.deepcopy(base), odd), 10)
