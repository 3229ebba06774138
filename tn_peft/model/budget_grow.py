"""Grow a circuit adapter to a parameter budget: start every module small, add what the gradient asks for.

``budget_mode: grow`` (with ``budget: B`` on ``quantum_peft``; ``--graph quantum_peft:budget=3000:budget_mode=grow``)
is the other way to the budget of :mod:`tn_peft.model.budget`: instead of pruning a wide start, the graph's
``layers`` / ``rank`` / targets describe the *largest* adapter, and training starts from its smallest member,
every target module at depth 0 and rank 1, then adds units until the count reaches B:

- a rank column: the next column k of a module (``s_k`` and the k-th columns of U and V; columns are added in
  order, as the pruner removes the last one);
- a depth pair: layers 2i and 2i + 1 of one circuit (U or V). Depth grows in pairs because a layer at zero
  angles is a fixed +-1 diagonal D (its CZ entanglers; every gate is the identity), and ``D D = I``: two
  zero-angle layers leave the circuit exactly as it was.

The adapter is built at its largest shape; a unit not yet added is *dormant*: its parameters are held at zero
(a gradient hook zeroes their gradient), so a dormant column adds ``0 u_k v_k^T`` and a dormant pair ``I`` --
the model computes exactly the small adapter. The gradient a dormant unit receives is its growth score: one
gradient step of size eta on its parameters theta_u lowers the loss by ``eta ||g_u||^2`` to first order, so
the score is the squared gradient per parameter, smoothed as AdaLoRA smooths its sensitivity::

    I_u <- beta I_u + (1 - beta) ||dL/dtheta_u||^2 / cost_u          (cost: 1 for a column, the pair's angles)

On AdaLoRA's cubic schedule, run upward (:func:`~tn_peft.model.budget.cubic_target` from the start's count to
B), every ``every`` steps the units with the largest ``I_u`` are added while the count stays within the
schedule; from step ``T - t_f`` the set is fixed and the adapter is rebuilt at its grown shape (dormant units
removed, which changes no output), so the saved adapter holds at most B trainable parameters and reloads through
``layer_graph_args`` as a pruned one does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SpecError
from .budget import (
    DEPTH_PARAMS,
    BudgetPruner,
    ModuleState,
    Unit,
    cubic_target,
    odd_depth_error,
)


class BudgetGrower(BudgetPruner):
    """Grows the adapter ``adapter_name`` of ``model`` from depth 0, rank 1 in every module to at most ``budget``
    trainable parameters over ``total_steps`` steps (module docstring). The training loop is the pruner's::

        grower = BudgetGrower(model, budget=3000, total_steps=200)
        for step in range(200):
            loss = ...; optimizer.zero_grad(); loss.backward()
            grower.observe()                 # growth scores, from this step's gradients
            optimizer.step()
            grower.step(step + 1, optimizer)  # grow on the schedule; at T - t_f the adapter takes its grown shape

    Each circuit's depth must be even (depth grows in pairs of layers).
    """

    mode = "grow"
    shadowed = False

    # ------------------------------------------------------------------ the dormant units
    def _begin(self) -> None:
        """Check the depths, zero every dormant unit, and hook the gradients that score them."""
        self.rank_on: dict[str, int] = {}                     # module -> columns added (k)
        self.pairs_on: dict[str, dict[str, set[int]]] = {}    # module -> circuit -> added pairs i
        self.column_score: dict[str, torch.Tensor] = {}       # module -> smoothed score of each column
        self.pair_score: dict[str, dict[str, torch.Tensor]] = {}
        self._pending: dict[tuple[str, str], torch.Tensor] = {}  # this step's squared gradients, per (module, node)
        self._masks: dict[tuple[str, str], torch.Tensor] = {}    # (module, node) -> dormant-entry mask
        for name, state in self.modules.items():
            for node, depth in state.depths.items():
                if depth % 2:
                    raise odd_depth_error(node, f"module {name!r}", depth)
            self.rank_on[name] = 1
            self.pairs_on[name] = {node: set() for node in state.depths}
            self.column_score[name] = torch.zeros(state.rank)
            self.pair_score[name] = {node: torch.zeros(depth // 2) for node, depth in state.depths.items()}
            with torch.no_grad():
                self._diagonal(state).values[1:] = 0
                for node in self._circuits(state).values():
                    node.weights.zero_()
            self._hooks.append(self._diagonal(state).values.register_hook(self._masker(name, "s")))
            for node_name, node in self._circuits(state).items():
                if node.weights.numel():
                    self._hooks.append(node.weights.register_hook(self._masker(name, node_name)))
        smallest = self.count()
        if smallest > self.budget:
            raise SpecError(f"budget {self.budget} is below the smallest adapter budget_mode=grow starts from "
                            f"({smallest} parameters: every target module at depth 0, rank 1)",
                            fix=f"raise the budget to at least {smallest}, or adapt fewer modules (--targets)")

    def _diagonal(self, state: ModuleState) -> nn.Module:
        return next(n for n in self._adapter(state).node_modules().values() if n.kind == "diagonal")

    def _dormant(self, name: str, node: str, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """Mask (1: dormant) over a parameter of module ``name``: s's columns from k on, a circuit's dormant layers.
        Kept in ``_masks`` until the grown set changes (:meth:`grow_to` drops it), not rebuilt per backward."""
        key = (name, node)
        if key in self._masks:
            return self._masks[key]
        mask = torch.zeros(shape, dtype=torch.bool)
        if node == "s":
            mask[self.rank_on[name]:] = True
        else:
            for i in range(shape[0] // 2):
                if i not in self.pairs_on[name][node]:
                    mask[2 * i: 2 * i + 2] = True
        self._masks[key] = mask = mask.to(device)
        return mask

    def _masker(self, name: str, node: str):
        """Gradient hook of one parameter: keep its squared gradient for the scores, zero it on dormant entries."""
        def hook(grad: torch.Tensor) -> torch.Tensor | None:
            if self.done or name not in self.modules:
                return None
            squared = grad.detach().float().pow(2).cpu()
            key = (name, node)
            self._pending[key] = squared if key not in self._pending else self._pending[key] + squared
            return grad.masked_fill(self._dormant(name, node, grad.shape, grad.device), 0)
        return hook

    # ------------------------------------------------------------------ counts and scores
    def _pair_cost(self, state: ModuleState, node: str) -> int:
        return 2 * self._depth_cost(state, node)

    def count(self) -> int:
        """Trainable parameters of the adapter as grown so far (dormant units do not count)."""
        if self.done:
            return super().count()
        total = 0
        for name, state in self.modules.items():
            circuits = self._circuits(state)
            total += sum(node.initial.numel() for node in circuits.values()) + self.rank_on[name]
            total += sum(len(self.pairs_on[name][n]) * self._pair_cost(state, n) for n in circuits)
        return total

    def observe(self) -> dict[Unit, float]:
        """Fold this step's squared gradients into the smoothed growth scores (call after ``backward``); returns
        the step's raw score of every unit that could be added now."""
        if self.done:
            self._pending = {}
            return {}
        raw: dict[Unit, float] = {}
        b = self.beta
        for (name, node), squared in self._pending.items():
            if node == "s":
                self.column_score[name].mul_(b).add_((1 - b) * squared)
                k = self.rank_on[name]
                if k < squared.numel():
                    raw[Unit("rank", name)] = float(squared[k])
            else:
                per_pair = squared.reshape(squared.shape[0] // 2, -1).mean(1)   # squared gradient per parameter
                self.pair_score[name][node].mul_(b).add_((1 - b) * per_pair)
                for i, value in enumerate(per_pair.tolist()):
                    if i not in self.pairs_on[name][node]:
                        raw[Unit("depth", name, i, node)] = value
        self._pending = {}
        return raw

    def units(self) -> list[tuple[Unit, float, int]]:
        """Every unit that can be added now, with its smoothed score per parameter and its cost: the next rank
        column of each module, each dormant depth pair (``Unit.index``: the pair i, layers 2i and 2i + 1)."""
        out = []
        for name, state in self.modules.items():
            k = self.rank_on[name]
            if k < state.rank:
                out.append((Unit("rank", name), float(self.column_score[name][k]), 1))
            for node, scores in self.pair_score[name].items():
                cost = self._pair_cost(state, node)
                out += [(Unit("depth", name, i, node), float(scores[i]), cost)
                        for i in range(scores.numel()) if i not in self.pairs_on[name][node]]
        return out

    # ------------------------------------------------------------------ growing
    def step(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> list[Unit]:
        """After ``step`` optimizer steps: grow to :meth:`target` on a grow step (every ``every`` steps inside the
        schedule); at step ``T - t_f`` grow to the budget and rebuild the adapter at its grown shape (the
        optimizer's parameters and state follow). Returns the units added."""
        if self.done:
            return []
        boundary = step >= self.total - self.final
        if step <= self.warmup or not (boundary or step % self.every == 0):
            return []
        added = self.grow_to(self.target(step), step=step)
        if boundary:
            self._settle(optimizer)
        return added

    def target(self, step: int) -> int:
        """The most parameters allowed after ``step`` steps: the cubic schedule run upward to the budget."""
        return cubic_target(step, min(self.start, self.budget), self.budget, self.total, self.warmup, self.final)

    def grow_to(self, target: int, *, step: int = -1) -> list[Unit]:
        """Add the units of largest score per parameter while the count stays at most ``target``."""
        count = self.count()
        added: list[Unit] = []
        while True:
            fits = [(score, unit, cost) for unit, score, cost in self.units() if count + cost <= target]
            if not fits:
                break
            _, unit, cost = max(fits, key=lambda f: (f[0], -f[2], f[1].module, f[1].node, -f[1].index))
            if unit.kind == "rank":
                self.rank_on[unit.module] += 1
            else:
                self.pairs_on[unit.module][unit.node].add(unit.index)
            count += cost
            added.append(unit)
            self._masks.pop((unit.module, "s" if unit.kind == "rank" else unit.node), None)
        self.events.append({"step": step, "target": target, "count": count,
                            "units": [(u.kind, u.module, u.index) for u in added]})
        return added

    def _settle(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Rebuild every module at its grown shape: drop its dormant layers and columns (they change no output)."""
        self.done = True
        self._pending = {}
        for name, state in list(self.modules.items()):
            units = [Unit("rank", name)] * (state.rank - self.rank_on[name])
            for node, depth in state.depths.items():
                units += [Unit("depth", name, l, node) for l in range(depth) if l // 2 not in self.pairs_on[name][node]]
            if units:
                self.remove(name, units, optimizer)
        self.close()

    def finish(self, optimizer: torch.optim.Optimizer | None = None) -> list[Unit]:
        """Grow to the budget and take the grown shape now (a loop that stopped before the schedule's end)."""
        if self.done:
            return []
        added = self.grow_to(self.budget, step=self.total)
        self._settle(optimizer)
        return added

    def allocation(self) -> dict[str, dict[str, int]]:
        """Module name -> its circuits' depths (``out_layers``, ``in_layers``) and ``rank`` as grown so far."""
        if self.done:
            return super().allocation()
        return {name: {**{DEPTH_PARAMS[n]: 2 * len(p) for n, p in self.pairs_on[name].items()},
                       "rank": self.rank_on[name]} for name in self.modules}



__all__ = ["BudgetGrower"]
