"""A ``budget`` graph in the finetune loop (tn_peft.apps.finetune.train with tn_peft.model.budget): the run reports the
pruned adapter's count, at most B, and its allocation."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tn_peft.apps.finetune.data import (
    encode,
    group_split,
    load_rotten_tomatoes,
    model_path,
)
from tn_peft.apps.finetune.methods import Method, build_classifier, load_encoder
from tn_peft.apps.finetune.train import train
from tn_peft.errors import DataError, MissingDependencyError


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    try:
        folder, rt = model_path(), load_rotten_tomatoes()
    except MissingDependencyError as err:
        pytest.skip(str(err))
    split = group_split(rt, train=48, validation=16, test=16, seed=0)
    encoder, tokenizer = load_encoder(folder)
    return encoder, {p: encode(getattr(split, p), tokenizer, 32) for p in ("train", "validation", "test")}


@pytest.mark.slow
def test_a_budget_run_reports_the_pruned_count(tiny):
    encoder, enc = tiny
    method = Method("qp-budget", graph_args={"layers": 1, "budget": 400}, targets=["query", "value"], lr=3e-2,
                    lr_diag=1e-1, lr_head=1e-2, steps=10)
    torch.manual_seed(0)
    model, _ = build_classifier(method, copy.deepcopy(encoder), 2)
    history = train(model, method, enc["train"], enc["validation"], enc["test"], batch_size=16, eval_every=10,
                    progress=False)
    kept = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head."))
    assert history.adapter_parameters == kept <= 400
    assert history.budget["start"] == 672 and history.budget["final"] == kept and history.budget["events"]


def test_budget_and_angle_decay_are_refused_together(tiny):
    encoder, enc = tiny
    method = Method("qp-budget", graph_args={"layers": 1, "budget": 400}, targets=["query", "value"], steps=2,
                    angle_decay=1e-2)
    model, _ = build_classifier(method, copy.deepcopy(encoder), 2)
    with pytest.raises(DataError, match="budget"):
        train(model, method, enc["train"], None, None, batch_size=16, progress=False)
