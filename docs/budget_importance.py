"""Does the budget pruner's importance predict the loss change a prune causes? (issue 26; docs/finetune.md)

Trains the budget-3000 start (quantum_peft layers=3 rank=8 on all six linear layers of MiniLM, 4,632
parameters; Rotten Tomatoes, lr 0.03 / lr_diag 0.1 / lr_head 0.003, linear schedule over 200 steps) for
STEPS steps with the pruner observing but not pruning, then, for every unit (each circuit's depth layers, each
module's last rank column, each module), compares
  - predicted: the first-order loss change on the measurement batches (tn_peft.model.budget.BudgetPruner.predictions)
    and the smoothed importance the allocation ranks by (its EMA over the training steps),
  - measured: the loss on the same measurement batches (2 training batches of 32, dropout off) after removing
    the unit, minus the loss before.
Writes docs/budget_importance.png and docs/budget_importance.json.
Run: PYTHONPATH=. OMP_NUM_THREADS=1 nice python docs/budget_importance.py  (about 8 CPU-minutes)
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch

from tn_peft.apps.finetune.data import encode, group_split, load_dataset, model_path
from tn_peft.apps.finetune.methods import (
    Method,
    build_classifier,
    load_encoder,
    parameter_groups,
)
from tn_peft.apps.finetune.train import length_grouped_batches, lr_factor
from tn_peft.model.budget import BudgetPruner

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ALL6 = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
OUT = Path(__file__).parent


def loss_on(model, batches) -> float:
    with torch.no_grad():
        total = sum(float(torch.nn.functional.cross_entropy(model(ids, mask), y, reduction="sum"))
                    for ids, mask, y in batches)
    return total / sum(len(y) for _, _, y in batches)


def spearman(a, b) -> float:
    ra, rb = (torch.tensor(x).argsort().argsort().double() for x in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def pearson(a, b) -> float:
    return float(torch.corrcoef(torch.tensor([a, b], dtype=torch.float64))[0, 1])


def main() -> None:
    torch.set_num_threads(1)
    started = time.time()
    data, _ = load_dataset("rotten-tomatoes")
    split = group_split(data, train=3200, validation=800, test=2000, seed=0)
    encoder, tokenizer = load_encoder(model_path())
    train = encode(split.train, tokenizer, 64)
    method = Method("qp-budget-start", graph_args={"layers": 3, "rank": 8}, targets=ALL6, lr=3e-2, lr_diag=1e-1,
                    lr_head=3e-3)
    torch.manual_seed(0)
    model, wrapped = build_classifier(method, copy.deepcopy(encoder), 2)
    pruner = BudgetPruner(wrapped, 10**9, 200)   # observes every step; a budget above the count never prunes
    optimizer = torch.optim.AdamW(parameter_groups(model, method), weight_decay=0.0)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    generator = torch.Generator().manual_seed(0)
    batches: list[torch.Tensor] = []
    model.train()
    for step in range(STEPS):
        if not batches:
            batches = length_grouped_batches(train, 32, generator)
        ids, mask, y = train.batch(batches.pop())
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr * lr_factor(step, 200)
        loss = torch.nn.functional.cross_entropy(model(ids, mask), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        pruner.observe()
        optimizer.step()
    smoothed = {u: s for u, s, _ in pruner.units()}
    # measurement batches: 2 training batches of 32 (a fixed shuffle), dropout off
    picked = length_grouped_batches(train, 32, torch.Generator().manual_seed(12345))[:2]
    measure = [train.batch(idx) for idx in picked]
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    width = max(i.shape[1] for i, _, _ in measure)   # one batch of 64, padded (masked: same outputs)
    ids = torch.cat([torch.nn.functional.pad(i, (0, width - i.shape[1])) for i, _, _ in measure])
    mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for _, m, _ in measure])
    labels = torch.cat([y for _, _, y in measure])
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(ids, mask), labels).backward()
    instant = pruner.predictions()
    pruner.close()
    model.eval()
    before = loss_on(model, [(ids, mask, labels)])
    rows = []
    for unit, score, cost in pruner.units():
        trial = copy.deepcopy(model)
        trial_wrapped = trial.encoder
        trial_pruner = BudgetPruner(trial_wrapped, 10**9, 200)
        trial_pruner.remove(unit.module, [unit])
        trial_pruner.close()
        measured = loss_on(trial, [(ids, mask, labels)]) - before
        rows.append({"kind": unit.kind, "module": unit.module, "node": unit.node, "index": unit.index, "cost": cost,
                     "predicted": instant.get(unit), "smoothed": smoothed[unit], "measured": measured})
    result = {"steps": STEPS, "start_parameters": pruner.start, "loss_before": before, "units": len(rows),
              "seconds": time.time() - started}
    for kind in ("depth", "rank", "module", "all"):
        sel = [r for r in rows if kind in ("all", r["kind"])]
        meas = [r["measured"] for r in sel]
        result[kind] = {"units": len(sel),
                        "pearson_predicted": pearson([r["predicted"] for r in sel], meas),
                        "spearman_predicted": spearman([r["predicted"] for r in sel], meas),
                        "pearson_smoothed": pearson([r["smoothed"] for r in sel], meas),
                        "spearman_smoothed": spearman([r["smoothed"] for r in sel], meas)}
    (OUT / "budget_importance.json").write_text(json.dumps({"summary": result, "rows": rows}, indent=1) + "\n")
    plot(rows, result)
    print(json.dumps(result, indent=1))


def plot(rows, result) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    colors = {"depth": "tab:blue", "rank": "tab:orange", "module": "tab:green"}
    for ax, key, title in ((axes[0], "predicted", "first-order prediction on the measurement batches"),
                           (axes[1], "smoothed", "smoothed importance (EMA over training steps)")):
        for kind, color in colors.items():
            sel = [r for r in rows if r["kind"] == kind]
            ax.scatter([r[key] for r in sel], [r["measured"] for r in sel], s=12, alpha=0.7, color=color,
                       label=f"{kind} ({len(sel)}): r = {result[kind]['pearson_' + key]:.3f}")
        lo = min(min(r[key] for r in rows), min(r["measured"] for r in rows))
        hi = max(max(r[key] for r in rows), max(r["measured"] for r in rows))
        ax.plot([lo, hi], [lo, hi], color="gray", linewidth=0.8, linestyle="--", label="y = x")
        ax.set(xlabel=f"{key} loss change", ylabel="measured loss change (removing the unit)",
               title=f"{title}\nall {len(rows)} units: Pearson {result['all']['pearson_' + key]:.3f}, "
                     f"Spearman {result['all']['spearman_' + key]:.3f}")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Budget pruner importance vs measured loss change, MiniLM on Rotten Tomatoes, after "
                 f"{result['steps']} steps of the budget-3000 start ({result['start_parameters']:,} parameters)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(OUT / "budget_importance.png", dpi=130)


if __name__ == "__main__":
    main()
