"""A parameter budget for circuit adapters: train a wide Quantum-PEFT adapter, prune it to at most B parameters.

``budget: B`` on the ``quantum_peft`` graph (``--graph quantum_peft:budget=3000``; 0, the default, is no
budget) makes the adapter the graph's ``layers`` / ``rank`` / targets describe the *start*, and a
:class:`BudgetPruner` cuts it down to at most B trainable parameters during training, as AdaLoRA does for
LoRA's ranks. What it removes, per adapted module m (each removal is structural: the module is rebuilt
smaller, so the saved adapter holds only what is left and loads through its ``layer_graph_args`` and
``exclude_modules``, with nothing special):

- a depth layer l of one circuit: the l-th entangling layer of U (``out_layers`` L_U -> L_U - 1) or of V
  (``in_layers``);
- its last rank column: ``s[k-1]`` and the k-th columns of U and V (``rank`` k -> k - 1; ``alpha`` moves
  with it, ``alpha_m = alpha k_m / k``, so ``alpha / rank`` and every kept column are unchanged);
- the module itself (dW_m = 0, it joins ``exclude_modules``).

Importance of a unit u is the first-order loss change its removal causes, from the gradients G_T = dL/dT
of the module's node tensors T (U, s, V) and the tensors T_u the module has without u::

    dL_u ~ sum_T <G_T, T_u - T>     rank column: -s_{k-1} g_{k-1};   module: -sum_j s_j g_j;
                                    depth l of U: <G_U, U_{-l} - U>   (of V: <G_V, V_{-l} - V>)

Each unit changes one factor of ``dW = c U diag(s) V^T`` (dW is linear in each), so this is the first-order
Taylor term in the change of dW, exact as that change goes to zero (with s: every change of dW is O(s)).

smoothed over steps as AdaLoRA smooths its sensitivity, ``I_u <- beta I_u + (1 - beta) dL_u`` (beta 0.85).
The schedule is AdaLoRA's cubic one: no pruning for the first ``warmup`` fraction of the steps, then the
allowed count falls from the start's B_0 to B as ``b(t) = B + (B_0 - B) (1 - (t - t_i) / (T - t_f - t_i))^3``,
and every ``every`` steps units are removed, smallest ``I_u / cost_u`` first (cost: the parameters it
frees), until the count is at most b(t); from step ``T - t_f`` (the ``final`` fraction) the count is at
most B and the structure stays fixed. The count is the frontier's: trainable adapter parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import SpecError, UsageError

#: AdaLoRA's defaults for its sensitivity EMA (beta1) and the share of steps before and after pruning
BETA = 0.85
WARMUP = 0.1
FINAL = 0.3
#: steps between two prune events (AdaLoRA's deltaT)
EVERY = 10
#: graph parameters the pruner changes per module
PARAMS = ("budget", "rank", "alpha")
#: how a budget is reached: ``prune`` a wide start (BudgetPruner) or ``grow`` a small one (budget_grow.BudgetGrower)
MODES = ("prune", "grow")
#: circuit node -> the graph parameter of its depth (quantum_peft: -1 means ``layers``)
DEPTH_PARAMS = {"U": "out_layers", "V": "in_layers"}


@dataclass
class ModuleState:
    """One adapted module as the pruner sees it: each circuit's depth, rank k, its scale's alpha, the smoothed
    importance of each unit (``depth_score[U][l]``, ``rank``, ``module``) and the shadow circuits that give
    ``U_{-l}``, ``V_{-l}``."""

    name: str
    layer: nn.Module
    depths: dict[str, int]
    rank: int
    alpha: float
    depth_score: dict[str, list[float]] = field(default_factory=dict)
    rank_score: float = 0.0
    module_score: float = 0.0
    shadows: dict[str, list[nn.Module]] = field(default_factory=dict)  # pauli node name -> one node per l


@dataclass(frozen=True)
class Unit:
    """A removable piece of one module: ``kind`` depth (layer ``index`` of circuit ``node``) | rank | module."""

    kind: str
    module: str
    index: int = -1
    node: str = ""


def find_engine(model: nn.Module) -> tuple[Any, list[Any]]:
    """``(engine, configs)``: the :class:`~tn_peft.model.model.TnPeftModel` inside ``model`` (itself, or under peft's
    front door) and the config objects to keep in step with a pruned adapter; ``(None, [])`` for another model."""
    from .model import TnPeftModel

    if isinstance(model, TnPeftModel):
        return model, []
    tuner = getattr(model, "base_model", None)
    engine = getattr(tuner, "__dict__", {}).get("_engine") if tuner is not None else None
    if isinstance(engine, TnPeftModel):
        return engine, [model.peft_config]
    return None, []


def budget_settings(network: Any) -> tuple[int, str]:
    """``(budget, budget_mode)`` of a graph (a loaded network), checked: budget an integer >= 0 (0: none), the
    mode one of :data:`MODES` and used only with a budget, and for ``grow`` even circuit depths. Needs no model,
    so a bad setting fails before one loads (``tn-peft finetune`` checks every spec first)."""
    params = network.params
    budget, mode = params.get("budget", 0), params.get("budget_mode", "prune")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise SpecError(f"budget must be an integer >= 0 (0: no budget), got {budget!r} (graph {network.name!r})",
                        fix="use e.g. --graph quantum_peft:budget=3000 or graph_args={'budget': 3000}")
    if mode not in MODES:
        raise SpecError(f"budget_mode must be one of {', '.join(MODES)}, got {mode!r} (graph {network.name!r})",
                        fix="use budget_mode=prune (start wide, cut down) or budget_mode=grow (start small, add)")
    if mode == "grow" and not budget:
        raise SpecError(f"budget_mode=grow needs a budget (graph {network.name!r} has budget 0: none)",
                        fix="add one, e.g. --graph quantum_peft:budget=3000:budget_mode=grow")
    if mode == "grow":
        for node, param in (("U", "out_layers"), ("V", "in_layers")):
            depth = params.get(param, -1)
            depth = params.get("layers", 0) if isinstance(depth, int) and depth < 0 else depth
            if isinstance(depth, int) and depth % 2:
                raise odd_depth_error(node, f"graph {network.name!r}", depth)
    return budget, mode


def odd_depth_error(node: str, owner: str, depth: int) -> SpecError:
    """The error for a circuit of odd depth under ``budget_mode: grow`` (``owner``: the graph or module)."""
    return SpecError(f"budget_mode=grow adds depth layers in pairs (two zero-angle layers are the identity), but "
                     f"circuit {node} of {owner} has {depth} layers",
                     fix="use an even layers (out_layers / in_layers), e.g. --set layers=4")


def budget_of(model: nn.Module, adapter_name: str = "default") -> int:
    """The ``budget`` graph parameter of the model's adapter (0: none, or not a tn_peft model)."""
    engine, _ = find_engine(model)
    if engine is None or adapter_name not in engine.networks:
        return 0
    return budget_settings(engine.networks[adapter_name])[0]


def allocator_for(model: nn.Module, total_steps: int, adapter_name: str = "default",
                  **options: Any) -> BudgetPruner | None:
    """What spends the model adapter's ``budget`` during training: a :class:`BudgetPruner` (``budget_mode:
    prune``) or a :class:`~tn_peft.model.budget_grow.BudgetGrower` (``grow``); None without a budget."""
    engine, _ = find_engine(model)
    if engine is None or adapter_name not in engine.networks:
        return None
    budget, mode = budget_settings(engine.networks[adapter_name])
    if not budget:
        return None
    if mode == "grow":
        from .budget_grow import BudgetGrower

        return BudgetGrower(model, budget, total_steps, adapter_name=adapter_name, **options)
    return BudgetPruner(model, budget, total_steps, adapter_name=adapter_name, **options)


def cubic_target(step: int, start: int, budget: int, total: int, warmup: int, final: int) -> int:
    """AdaLoRA's budget schedule: ``start`` up to step ``warmup``, ``budget`` from step ``total - final``, the
    cubic ``budget + (start - budget) (1 - (step - warmup) / (total - final - warmup))^3`` between (falling
    when pruning, ``start > budget``; rising when growing, ``start < budget``; never past ``budget``).

    >>> [cubic_target(s, 1000, 100, 100, 10, 30) for s in (0, 10, 20, 40, 69, 70, 100)]
    [1000, 1000, 620, 212, 100, 100, 100]
    >>> [cubic_target(s, 100, 1000, 100, 10, 30) for s in (0, 10, 20, 40, 69, 70, 100)]
    [100, 100, 479, 887, 999, 1000, 1000]
    """
    if step <= warmup:
        return start
    if step >= total - final:
        return budget
    left = 1 - (step - warmup) / max(1, total - final - warmup)
    value = int(budget + (start - budget) * left ** 3)
    return max(budget, value) if start >= budget else min(budget, value)


def _is_circuit(node: nn.Module) -> bool:
    return getattr(node, "kind", None) == "pauli" and getattr(node, "construction", "csd") != "csd"


class BudgetPruner:
    """Prunes the adapter ``adapter_name`` of ``model`` to at most ``budget`` trainable parameters over
    ``total_steps`` steps (module docstring). In a training loop::

        pruner = BudgetPruner(model, budget=3000, total_steps=200)
        for step in range(200):
            loss = ...; optimizer.zero_grad(); loss.backward()
            pruner.observe()                 # importance, from this step's gradients
            optimizer.step()
            pruner.step(step + 1, optimizer)  # prune on the schedule; the optimizer follows the new parameters

    The graph must be ``quantum_peft``'s form: circuits U and V (``pauli``, not csd; depths ``out_layers`` /
    ``in_layers``) and one ``diagonal`` node, ``rank`` and ``alpha`` parameters, no frames or quantized angles.
    """

    #: the budget_mode this class carries out (summary()["mode"])
    mode = "prune"
    #: each module keeps shadow circuits (its circuits less one layer) for the depth units' importance
    shadowed = True

    def __init__(self, model: nn.Module, budget: int, total_steps: int, *, adapter_name: str = "default",
                 warmup: float = WARMUP, final: float = FINAL, every: int = EVERY, beta: float = BETA) -> None:
        engine, configs = find_engine(model)
        if engine is None or adapter_name not in engine.networks:
            raise UsageError(f"BudgetPruner needs a tn_peft model with adapter {adapter_name!r}",
                             fix="wrap the model with tn_peft.get_model or peft.get_peft_model(TnPeftConfig(...))")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise SpecError(f"budget must be an integer >= 1, got {budget!r}", fix="use e.g. budget: 3000")
        if not isinstance(total_steps, int) or total_steps < 1:
            raise UsageError(f"total_steps must be an integer >= 1, got {total_steps!r}", fix="pass the loop's steps")
        if not (0 <= warmup < 1 and 0 <= final < 1 and warmup + final < 1 and every >= 1 and 0 <= beta < 1):
            raise UsageError(f"bad schedule: warmup={warmup}, final={final}, every={every}, beta={beta}",
                             fix="use 0 <= warmup, final < 1 with warmup + final < 1, every >= 1, 0 <= beta < 1")
        self.engine, self.configs, self.adapter = engine, [engine.peft_config] + configs, adapter_name
        self.budget, self.total = budget, total_steps
        self.warmup = round(warmup * total_steps)
        self.final = min(round(final * total_steps), total_steps - self.warmup - 1)
        self.every, self.beta = every, beta
        network = engine.networks[adapter_name]
        needed = PARAMS + tuple(DEPTH_PARAMS.values())
        missing = [p for p in needed if p not in network.params]
        if missing:
            raise SpecError(f"budget needs a graph with parameters {', '.join(needed)}; graph {network.name!r} "
                            f"has no {missing[0]!r}", fix="use graph quantum_peft")
        self.modules: dict[str, ModuleState] = {}
        for name, layer in engine.tn_layers():
            if adapter_name in layer.tn_adapters:
                self._check(name, layer.tn_adapters[adapter_name])
                net = layer.tn_adapters[adapter_name].network
                depths = {n: node.layers for n, node in self._circuits_of(layer.tn_adapters[adapter_name]).items()}
                self.modules[name] = ModuleState(name, layer, depths, int(net.params["rank"]), float(net.params["alpha"]))
        self.captured: dict[str, list[torch.Tensor]] = {}
        self.events: list[dict[str, Any]] = []   # every prune (grow) event: step, target, count after, units
        self._installed: set[str] = set()
        self.done = False   # past the schedule's last prune: no more importance to gather
        for state in self.modules.values():
            self._reset(state)
        self._hooks: list[Any] = []
        self._begin()
        self.start = self.count()

    def _begin(self) -> None:
        """Start watching the adapter: forward hooks that keep each forward's node tensors (their gradients
        are the importance's)."""
        self._hooks += [state.layer.register_forward_pre_hook(self._capture) for state in self.modules.values()]
        self._hooks += [state.layer.register_forward_hook(self._release) for state in self.modules.values()]
        self._names = {id(state.layer): name for name, state in self.modules.items()}

    # ------------------------------------------------------------------ checks and counts
    def _check(self, name: str, adapter: nn.Module) -> None:
        nodes = adapter.node_modules()
        kinds = sorted(node.kind for node in nodes.values())
        if (kinds.count("diagonal") != 1 or any(k not in ("pauli", "diagonal") for k in kinds)
                or sorted(n for n, node in nodes.items() if node.kind == "pauli") != sorted(DEPTH_PARAMS)):
            raise SpecError(f"budget needs circuits and one diagonal node per module; module {name!r} has {kinds}",
                            fix="use graph quantum_peft")
        for node in nodes.values():
            if node.kind == "pauli" and (getattr(node, "frame", "none") != "none" or getattr(node, "bits", 0)):
                raise SpecError("budget works on circuits without frames or quantized angles", node=node.name,
                                fix="drop frame / angle_bits, or drop budget")
            if node.kind == "diagonal" and getattr(node, "bits", 0):
                raise SpecError("budget works on a full-precision diagonal", node=node.name,
                                fix="drop diagonal_bits, or drop budget")

    def count(self) -> int:
        """Trainable parameters of the adapter now (the frontier's count)."""
        return sum(p.numel() for state in self.modules.values()
                   for p in state.layer.tn_adapters[self.adapter].parameters() if p.requires_grad)

    def target(self, step: int) -> int:
        """The most parameters allowed after ``step`` steps (:func:`cubic_target`)."""
        return cubic_target(step, max(self.start, self.budget), self.budget, self.total, self.warmup, self.final)

    def _adapter(self, state: ModuleState) -> nn.Module:
        return state.layer.tn_adapters[self.adapter]

    def _circuits(self, state: ModuleState) -> dict[str, nn.Module]:
        return self._circuits_of(self._adapter(state))

    @staticmethod
    def _circuits_of(adapter: nn.Module) -> dict[str, nn.Module]:
        return {n: node for n, node in adapter.node_modules().items() if node.kind == "pauli"}

    def _module_params(self, state: ModuleState) -> int:
        return sum(p.numel() for p in self._adapter(state).parameters())

    def _depth_cost(self, state: ModuleState, node: str) -> int:
        return self._circuits(state)[node].weights[0].numel()

    def units(self) -> list[tuple[Unit, float, int]]:
        """Every removable unit now, with its smoothed importance and cost (parameters it frees)."""
        out = []
        for name, state in self.modules.items():
            for node, depth in state.depths.items():
                if depth and node in state.shadows:
                    cost = self._depth_cost(state, node)
                    out += [(Unit("depth", name, l, node), state.depth_score[node][l], cost) for l in range(depth)]
            if state.rank > 1:
                out.append((Unit("rank", name), state.rank_score, 1))
            out.append((Unit("module", name), state.module_score, self._module_params(state)))
        return out

    # ------------------------------------------------------------------ importance
    def _capture(self, layer: nn.Module, args: tuple) -> None:
        """Forward pre-hook: keep this forward's node tensors of the layer (their gradients are the importance's)."""
        name = self._names.get(id(layer))
        if self.done or name not in self.modules or not (layer.training and torch.is_grad_enabled()):
            return
        cache = layer.node_cache
        if cache is None or self.adapter not in cache:
            tensors = self._adapter(self.modules[name]).node_tensors()
            layer.node_cache = {**(cache or {}), self.adapter: tensors}
            self._installed.add(name)
        tensors = layer.node_cache[self.adapter]
        for tensor in tensors:
            if tensor.requires_grad and not tensor.is_leaf:
                tensor.retain_grad()
        self.captured[name] = tensors

    def _release(self, layer: nn.Module, args: tuple, output: Any) -> None:
        name = self._names.get(id(layer))
        if name in self._installed:
            self._installed.discard(name)
            layer.node_cache = None

    def predictions(self) -> dict[Unit, float]:
        """First-order loss change of removing each unit, from the last backward's gradients (module docstring)."""
        out: dict[Unit, float] = {}
        with torch.no_grad():
            shadow_values = self._shadow_tensors()
            for name, state in self.modules.items():
                tensors = self.captured.get(name)
                if tensors is None:
                    continue
                operands = self._adapter(state).operands
                nodes = self._adapter(state).node_modules()
                grads = dict(zip(operands, (t.grad for t in tensors)))
                values = dict(zip(operands, tensors))
                if any(g is None for g in grads.values()):
                    continue
                diag = next(n for n in operands if nodes[n].kind == "diagonal")
                sg = (values[diag] * grads[diag]).reshape(-1)
                out[Unit("module", name)] = -float(sg.sum())
                out[Unit("rank", name)] = -float(sg[-1])
                for n, shadows in state.shadows.items():
                    for l, shadow in enumerate(shadows):
                        out[Unit("depth", name, l, n)] = float((grads[n] * (shadow_values[id(shadow)] - values[n])).sum())
        return out

    def _shadow_tensors(self) -> dict[int, torch.Tensor]:
        """Each shadow circuit's tensor (the module's circuit less one layer), batched by shape and depth."""
        from ..adapter.batching import evaluate_groups, group_nodes

        shadows = []
        for state in self.modules.values():
            for name, node in self._circuits(state).items():
                for l, shadow in enumerate(state.shadows.get(name, ())):
                    shadow.initial.copy_(node.initial)
                    if shadow.weights.numel():
                        shadow.weights.copy_(torch.cat([node.weights[:l], node.weights[l + 1:]]))
                    shadows.append(shadow)
        return evaluate_groups(group_nodes(shadows)) if shadows else {}

    def observe(self) -> dict[Unit, float]:
        """Fold the last backward's predictions into the smoothed importances (call after ``backward``,
        before ``optimizer.step``); returns the raw predictions."""
        if self.done:
            self.captured = {}
            return {}
        raw = self.predictions()
        b = self.beta
        for unit, value in raw.items():
            state = self.modules[unit.module]
            if unit.kind == "depth":
                scores = state.depth_score[unit.node]
                scores[unit.index] = b * scores[unit.index] + (1 - b) * value
            elif unit.kind == "rank":
                state.rank_score = b * state.rank_score + (1 - b) * value
            else:
                state.module_score = b * state.module_score + (1 - b) * value
        self.captured = {}
        return raw

    # ------------------------------------------------------------------ pruning
    def step(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> list[Unit]:
        """After ``step`` optimizer steps: prune to :meth:`target` on a prune step (every ``every`` steps inside
        the schedule, and at step ``T - t_f``); the optimizer's parameters and state follow. Returns the units removed."""
        boundary = step == self.total - self.final
        self.done = step >= self.total - self.final
        if step <= self.warmup or step > self.total - self.final or not (boundary or step % self.every == 0):
            return []
        return self.prune_to(self.target(step), optimizer, step=step)

    def prune_to(self, target: int, optimizer: torch.optim.Optimizer | None = None, *, step: int = -1) -> list[Unit]:
        """Remove the units of smallest importance per parameter until at most ``target`` parameters remain."""
        count = self.count()
        if count <= target:
            return []
        chosen: list[Unit] = []
        per_module: dict[str, list[Unit]] = {}
        for unit, score, cost in sorted(self.units(), key=lambda u: (u[1] / u[2], u[0].kind, u[0].module, u[0].index)):
            if count <= target:
                break
            taken = per_module.setdefault(unit.module, [])
            if any(t.kind == "module" for t in taken):
                continue
            state = self.modules[unit.module]
            if unit.kind == "module":
                count -= self._module_params(state) - sum(self._unit_cost(state, t) for t in taken)
                taken[:] = [unit]
            else:
                count -= self._unit_cost(state, unit)
                taken.append(unit)
            chosen.append(unit)
        for name, taken in per_module.items():
            if taken:
                self.remove(name, taken, optimizer)
        self.events.append({"step": step, "target": target, "count": self.count(),
                             "units": [(u.kind, u.module, u.index) for us in per_module.values() for u in us]})
        return [u for us in per_module.values() for u in us]

    def _unit_cost(self, state: ModuleState, unit: Unit) -> int:
        return self._depth_cost(state, unit.node) if unit.kind == "depth" else 1

    def finish(self, optimizer: torch.optim.Optimizer | None = None) -> list[Unit]:
        """Prune to the budget now (a loop that stopped before the schedule's end); usually removes nothing."""
        return self.prune_to(self.budget, optimizer, step=self.total)

    def remove(self, name: str, units: list[Unit], optimizer: torch.optim.Optimizer | None = None) -> None:
        """Rebuild module ``name`` without ``units`` (or drop it); the optimizer's state moves to the kept entries."""
        state = self.modules[name]
        old = self._adapter(state)
        old_params = list(old.parameters())
        if any(u.kind == "module" for u in units):
            self._drop(state)
            if optimizer is not None:
                _retarget(optimizer, {id(p): None for p in old_params})
            return
        kept = {n: [l for l in range(depth) if Unit("depth", name, l, n) not in units]
                for n, depth in state.depths.items()}
        depths = {n: len(k) for n, k in kept.items()}
        rank = state.rank - sum(u.kind == "rank" for u in units)
        alpha = state.alpha * rank / state.rank
        new = self._rebuilt(state, old, depths, rank, alpha)
        moves: dict[int, tuple[nn.Parameter, Any] | None] = {}
        with torch.no_grad():
            for node_name, node in new.node_modules().items():
                before = old.node(node_name)
                if node.kind == "diagonal":
                    node.values.copy_(before.values[:rank])
                    moves[id(before.values)] = (node.values, slice(0, rank))
                else:
                    node.initial.copy_(before.initial)
                    if node.weights.numel():   # layers 0: the mixed-radix weights are (0, 0), nothing to keep
                        node.weights.copy_(before.weights[kept[node_name]])
                    moves[id(before.initial)] = (node.initial, None)
                    moves[id(before.weights)] = (node.weights, kept[node_name])
        state.layer.tn_adapters[self.adapter] = new
        state.depths, state.rank, state.alpha = depths, rank, alpha
        state.depth_score = {n: [state.depth_score[n][l] for l in k] for n, k in kept.items()}
        self._set_config(name, {**{DEPTH_PARAMS[n]: d for n, d in depths.items()}, "rank": rank, "alpha": alpha})
        self._refresh()
        self._reset(state, keep_scores=True)
        if optimizer is not None:
            _retarget(optimizer, moves)

    def _rebuilt(self, state: ModuleState, old: nn.Module, depths: dict[str, int], rank: int, alpha: float) -> nn.Module:
        from ..adapter.adapter import Adapter

        network = old.network.with_params(rank=rank, alpha=alpha, **{DEPTH_PARAMS[n]: d for n, d in depths.items()})
        param = next(old.parameters())
        new = Adapter(network, old.in_features, old.out_features, dtype=param.dtype, device=param.device)
        got = {n: node.layers for n, node in self._circuits_of(new).items()}
        if got != depths:
            raise SpecError(f"budget: rebuilding module {state.name!r} with depths {depths} gave circuits of {got}",
                            fix="use graph quantum_peft (its circuits' layers follow out_layers / in_layers)")
        return new

    def _drop(self, state: ModuleState) -> None:
        state.layer.delete_adapter(self.adapter)
        del self.modules[state.name]
        self.engine.targets[self.adapter].pop(state.name, None)
        for config in self._config_objects():
            config.layer_graph_args.pop(_key(state.name), None)
            excluded = config.exclude_modules
            if excluded is None:
                config.exclude_modules = [state.name]
            elif isinstance(excluded, list):
                config.exclude_modules = excluded + [state.name]
            else:
                config.exclude_modules = f"(?:{excluded})|{re.escape(state.name)}"
        self._refresh()

    def _set_config(self, name: str, args: dict[str, Any]) -> None:
        """Record module ``name``'s own graph arguments where saving reads them (``layer_graph_args``)."""
        for config in self._config_objects():
            config.layer_graph_args[_key(name)] = dict(args)
        entry = self.engine.targets[self.adapter].get(name)
        if entry is not None:
            entry["graph"] = self._adapter(self.modules[name]).network.to_spec()

    def _config_objects(self) -> list[Any]:
        return [configs[self.adapter] for configs in self.configs if self.adapter in configs]

    def _refresh(self) -> None:
        """After a module was rebuilt or dropped: the engine forgets the old modules, the new ones train."""
        self.engine.adapter_modules_replaced([self.adapter])
        self.engine._mark_trainable()

    def _reset(self, state: ModuleState, keep_scores: bool = False) -> None:
        """(Re)build the module's shadow circuits (one per depth layer of each circuit, that circuit one layer
        shorter); zero its scores unless ``keep_scores``."""
        if not keep_scores:
            state.depth_score = {n: [0.0] * d for n, d in state.depths.items()}
            state.rank_score = state.module_score = 0.0
        state.shadows = {}
        if not self.shadowed:
            return
        from ..nodes.base import create_node

        adapter = self._adapter(state)
        param = next(adapter.parameters())
        for name, node in self._circuits(state).items():
            depth = state.depths[name]
            if not depth or not _is_circuit(node):
                continue
            network = adapter.network.with_params(**{DEPTH_PARAMS[name]: depth - 1})
            sizes = network.resolve(adapter.in_features, adapter.out_features)
            spec = next(s for s in network.nodes if s.name == name)
            shape = tuple(sizes[leg] for leg in spec.legs)
            state.shadows[name] = [
                create_node(spec.kind, spec.name, spec.legs, shape, spec.options, source=network.source,
                            checked=True).to(dtype=param.dtype, device=param.device).requires_grad_(False)
                for _ in range(depth)]

    def allocation(self) -> dict[str, dict[str, int]]:
        """Module name -> its circuits' depths (``out_layers``, ``in_layers``) and ``rank`` now (dropped modules
        are absent)."""
        return {name: {**{DEPTH_PARAMS[n]: d for n, d in s.depths.items()}, "rank": s.rank}
                for name, s in self.modules.items()}

    def summary(self) -> dict[str, Any]:
        """What the pruning did, for logs: start and final counts, budget, allocation, prune events."""
        return {"mode": self.mode, "budget": self.budget, "start": self.start, "final": self.count(), "allocation": self.allocation(),
                "events": self.events}

    def close(self) -> None:
        """Remove the pruner's hooks from the model."""
        for hook in self._hooks:
            hook.remove()
        self._hooks, self.captured = [], {}


def _key(name: str) -> str:
    """The ``layer_graph_args`` key that matches exactly module ``name``."""
    return re.escape(name)


def _retarget(optimizer: torch.optim.Optimizer, moves: dict[int, tuple[nn.Parameter, Any] | None]) -> None:
    """Replace old parameters in ``optimizer`` by new ones (``(new, index)``: the old state indexed along dim 0;
    ``None``: dropped), moving their state (Adam's moments) with them."""
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            if id(p) not in moves:
                params.append(p)
                continue
            move = moves[id(p)]
            state = optimizer.state.pop(p, None)
            if move is None:
                continue
            new, index = move
            params.append(new)
            moved = {k: (v[index].clone() if index is not None and torch.is_tensor(v) and v.shape == p.shape else v)
                     for k, v in (state or {}).items()}
            if moved and all(v.shape == new.shape for k, v in moved.items() if k != "step" and torch.is_tensor(v)):
                optimizer.state[new] = moved
        group["params"] = params


__all__ = ["BudgetPruner", "Unit", "allocator_for", "budget_of", "budget_settings", "cubic_target", "find_engine", "odd_depth_error"]
