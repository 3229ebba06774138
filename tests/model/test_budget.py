"""The budget option of quantum_peft (tn_peft.model.budget): pruning to at most B parameters, the pruned
adapter's save and reload, and the importance measure's first-order prediction of a prune's loss change."""

import copy
import itertools
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from budget_helpers import (
    ALL6,
    FOUR,
    batch,
    grow_model,
    hidden,
    peft_model,
    tiny_bert,
    train_pruned,
    trainable,
)

from tn_peft import AdapterConfig, SpecError, UsageError, get_model
from tn_peft.model import TnPeftModel
from tn_peft.model.budget import (
    BudgetPruner,
    Unit,
    allocator_for,
    budget_of,
    cubic_target,
)
from tn_peft.model.peft_method import TnPeftConfig


def test_cubic_schedule_starts_wide_and_ends_at_the_budget():
    targets = [cubic_target(s, 5000, 1000, 200, 20, 60) for s in range(201)]
    assert targets[:21] == [5000] * 21 and targets[140:] == [1000] * 61
    assert all(a >= b for a, b in itertools.pairwise(targets))


@pytest.mark.parametrize("hidden_size, budget", [(48, 100), pytest.param(48, 181, marks=pytest.mark.slow),
                                                 pytest.param(32, 70, marks=pytest.mark.slow)])
def test_budget_is_respected_and_counted_as_the_frontier_counts(hidden_size, budget):
    base = tiny_bert(hidden_size)
    model = peft_model(base, budget)
    head = torch.nn.Linear(hidden_size, 2)
    pruner = allocator_for(model, 12, every=3)
    start = trainable(model)
    assert pruner.start == start > 1.5 * budget
    optimizer = train_pruned(model, pruner, head, 12)
    # at most B trainable adapter parameters, and the pruner's count is the model's
    assert pruner.count() == trainable(model) <= budget
    assert pruner.summary()["final"] == trainable(model) and pruner.summary()["start"] == start
    # the optimizer holds exactly the model's trainable parameters (and the head), no stale ones
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters() if p.requires_grad} | {id(p) for p in head.parameters()}
    # prune events follow the schedule: none in the warmup, the last at T - t_f, counts never above the target
    events = pruner.summary()["events"]
    assert events and all(e["step"] > pruner.warmup for e in events[:-1])
    assert all(e["count"] <= e["target"] for e in events)


def test_pruned_adapter_reloads_through_peft_with_identical_outputs(tmp_path):
    base = tiny_bert()
    model = peft_model(base, 200)
    pruner = allocator_for(model, 12, every=3)
    modules = len(pruner.modules)
    train_pruned(model, pruner, torch.nn.Linear(48, 2), 12)
    pruned = trainable(model)
    allocation = pruner.allocation()
    start = {"out_layers": 3, "in_layers": 3, "rank": 4}
    assert any(a != start for a in allocation.values())                          # a kept one has its own shape
    ids, mask, _ = batch(99)
    with torch.no_grad():
        expected = hidden(model, ids, mask)
    model.save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert len(saved["exclude_modules"]) == modules - len(allocation)

    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path), is_trainable=True)
    assert trainable(loaded) == pruned <= 200
    engine = loaded.base_model._engine
    shapes = {name: {"out_layers": layer.tn_adapters["default"].node("U").layers,
                     "in_layers": layer.tn_adapters["default"].node("V").layers,
                     "rank": layer.tn_adapters["default"].node("s").shape[0]}
              for name, layer in engine.tn_layers() if "default" in layer.tn_adapters}
    assert shapes == allocation
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(hidden(loaded, ids, mask), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_pruned_adapter_reloads_through_the_engine_with_identical_outputs(tmp_path):
    base = tiny_bert()
    config = AdapterConfig(graph="quantum_peft", graph_args={"layers": 3, "rank": 4, "budget": 120},
                           target_modules=FOUR)
    model = get_model(copy.deepcopy(base), config)
    pruner = allocator_for(model, 12, every=3)
    train_pruned(model, pruner, torch.nn.Linear(48, 2), 12)
    ids, mask, _ = batch(7)
    with torch.no_grad():
        expected = hidden(model, ids, mask)
    model.save_pretrained(tmp_path)
    loaded = TnPeftModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert trainable(loaded) == trainable(model) <= 120
    with torch.no_grad():
        torch.testing.assert_close(hidden(loaded, ids, mask), expected, rtol=0, atol=1e-6)


def loss_of(model, head, ids, mask, labels) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(head(hidden(model, ids, mask)), labels))


@pytest.mark.slow
def test_importance_is_the_first_order_loss_change_of_each_prune():
    """With s small, dW and every prune's change of it are small: the prediction matches the measured change."""
    base = tiny_bert(layers=2)
    model = peft_model(base, 100, targets=ALL6)
    head = torch.nn.Linear(48, 2)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("nodes.s.values"):
                p.copy_(1e-2 * torch.randn(p.shape))
    pruner = allocator_for(model, 20)
    ids, mask, labels = batch(3, size=16)
    model.train()   # no dropout in the adapters; BERT's dropout off for an exact comparison
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    loss = torch.nn.functional.cross_entropy(head(hidden(model, ids, mask)), labels)
    loss.backward()
    predicted = pruner.predictions()
    pruner.close()
    model.eval()
    before = loss_of(model, head, ids, mask, labels)
    name = "encoder.layer.1.attention.self.value"
    checked = 0
    for unit in [Unit("module", name), Unit("rank", name), Unit("depth", name, 0, "U"), Unit("depth", name, 2, "V"),
                 Unit("depth", "encoder.layer.0.intermediate.dense", 1, "U"),
                 Unit("depth", "encoder.layer.0.intermediate.dense", 0, "V")]:
        trial = copy.deepcopy(model)
        trial_pruner = BudgetPruner(trial, 100, 20)
        trial_pruner.remove(unit.module, [unit])
        measured = loss_of(trial, head, ids, mask, labels) - before
        assert abs(measured - predicted[unit]) <= 0.05 * abs(predicted[unit]) + 1e-7, (unit, measured, predicted[unit])
        checked += abs(predicted[unit]) > 1e-6
    assert checked >= 5


def test_budget_errors_are_clear():
    base = tiny_bert()
    assert allocator_for(peft_model(base, 0), 10) is None                      # budget 0: none
    assert budget_of(torch.nn.Linear(2, 2)) == 0                           # not a tn_peft model
    with pytest.raises(SpecError, match="budget"):
        get_model(copy.deepcopy(base), AdapterConfig(graph="lora", graph_args={"budget": 10}, target_modules=["query"]))
    with pytest.raises(SpecError, match="budget must be an integer"):
        budget_of(get_model(copy.deepcopy(base), AdapterConfig(graph="quantum_peft", graph_args={"budget": -5},
                                                               target_modules=["query"])))
    framed = get_model(copy.deepcopy(base), AdapterConfig(graph="quantum_peft",
                                                          graph_args={"budget": 50, "frame": "weight"},
                                                          target_modules=["query"]))
    with pytest.raises(SpecError, match="frames"):
        allocator_for(framed, 10)
    lora = get_model(copy.deepcopy(base), AdapterConfig(graph="lora", target_modules=["query"]))
    with pytest.raises(SpecError, match="parameters budget"):
        BudgetPruner(lora, 10, 10)
    with pytest.raises(UsageError, match="tn_peft model"):
        BudgetPruner(base, 10, 10)
    with pytest.raises(UsageError, match="schedule"):
        allocator_for(peft_model(base, 50), 10, warmup=0.6, final=0.5)


def test_peft_door_reloads_per_layer_depths_of_a_catalog_graph(tmp_path):
    """A saved graph_spec has its parameters substituted into node options; per-layer depth overrides of a catalog
    graph are expanded again from the catalog (tn_peft.model.peft_method._catalog_template_fits)."""
    base = tiny_bert()
    config = TnPeftConfig(graph="quantum_peft", graph_args={"layers": 2}, target_modules=["query", "value"],
                          layer_graph_args={"value": {"out_layers": 0, "in_layers": 1}})
    model = peft.get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("nodes.s.values"):
                p.fill_(0.1)
    model.save_pretrained(str(tmp_path))
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path))
    depths = {n.rsplit(".", 1)[-1]: (layer.tn_adapters["default"].node("U").layers,
                                     layer.tn_adapters["default"].node("V").layers)
              for n, layer in loaded.base_model._engine.tn_layers()}
    assert depths == {"query": (2, 2), "value": (0, 1)}
    ids, mask, _ = batch(5)
    with torch.no_grad():
        torch.testing.assert_close(hidden(loaded, ids, mask), hidden(model, ids, mask), rtol=0, atol=1e-6)


@pytest.mark.parametrize("build", [peft_model, grow_model], ids=["prune", "grow"])
def test_no_grad_forwards_after_a_rebuild_read_the_new_modules(build):
    """Evaluating between prune (grow) events fills the inference node cache and its index of adapter modules;
    the rebuilt modules must replace them there (a stale index evaluated the old, larger adapter)."""
    base = tiny_bert()
    model = build(base, 150)
    allocator = allocator_for(model, 20, every=3)
    ids, mask, _ = batch(97)

    def evaluate(step):                             # before and between rebuilds, as validation runs in finetune
        if step in (2, 8):
            model.eval()
            with torch.no_grad():
                hidden(model, ids, mask)

    train_pruned(model, allocator, torch.nn.Linear(48, 2), 20, after_step=evaluate)
    model.eval()
    with torch.no_grad():
        cached = hidden(model, ids, mask)
    fresh = hidden(model, ids, mask).detach()       # a forward with gradients computes from the live modules
    torch.testing.assert_close(cached, fresh, rtol=0, atol=1e-6)
