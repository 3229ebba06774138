"""Method specs for ``tn-peft finetune --compare`` / ``--graph``: ``NAME[:KEY=V1,V2[:KEY=...]]``.

A spec names one method family and a grid of settings; each ``KEY`` takes one value or a
comma-separated list, and the grid is their product::

    lora:r=1,2,4,8          four LoRA rows (peft's LoraConfig, r = 1, 2, 4, 8)
    vera:r=256:lr=1e-2,3e-2 VeRA r256; with --tune the two learning rates are a grid to choose from
    fourierft:n=100,1000    peft's FourierFT with n_frequency 100 and 1000
    ia3                     peft's IA3 (feedforward_modules empty unless given)
    quantum_peft:layers=1,3 a tn_peft graph (with --graph), two rows
    head                    the frozen encoder with the head alone: the floor

Keys: ``lr``, ``lr_head`` (and ``lr_diag`` for graphs) are optimizer settings; ``targets`` names the
row's own target modules joined by ``+`` (``quantum_peft:targets=query+key+value`` adapts those three;
``targets=query+value,query+key+value`` is two rows; without it, ``--targets``); every other key is a
graph parameter (``--graph``) or a field of the peft method's config class (``--compare``), with the
short names ``r``, ``alpha`` (``lora_alpha`` for LoRA) and ``n`` (``n_frequency``). Several values of
a learning rate are one row's tuning grid (``--tune``: chosen on validation) or, without ``--tune``,
one row each. peft is the baseline library: its configs are built here, its methods are never
reimplemented.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import yaml

from ...errors import DataError

LR_KEYS = ("lr", "lr_head", "lr_diag")
#: the spec key of a row's own target modules (joined by TARGETS_JOIN, since commas make a grid)
TARGETS_KEY, TARGETS_JOIN = "targets", "+"
#: learning rates by role for graphs (chosen on Rotten Tomatoes validation: docs/finetune.md)
GRAPH_LRS = {"lr": 3e-2, "lr_diag": 1e-1, "lr_head": 3e-3}
#: head learning rate of every method (validation-chosen for LoRA and Quantum-PEFT alike)
HEAD_LR = 3e-3
#: the adapter learning-rate grid ``--tune`` searches when a spec gives none (per peft method; others: DEFAULT_GRID)
PEFT_GRIDS = {
    "lora": (1e-3, 3e-3, 1e-2), "loha": (1e-3, 3e-3, 1e-2), "lokr": (1e-3, 3e-3, 1e-2),
    "vera": (1e-2, 3e-2, 1e-1), "ia3": (1e-2, 3e-2, 1e-1), "fourierft": (3e-2, 1e-1, 3e-1),
    "boft": (1e-3, 3e-3, 1e-2), "oft": (1e-3, 3e-3, 1e-2), "hra": (1e-3, 3e-3, 1e-2),
    "ln_tuning": (1e-3, 3e-3, 1e-2), "randlora": (1e-3, 3e-3, 1e-2), "vblora": (1e-3, 3e-3, 1e-2),
}
DEFAULT_GRID = (1e-3, 3e-3, 1e-2)
def default_lr(peft_type: str) -> float:
    """The single learning rate used without --tune: the grid's middle value (LoRA's 3e-3 was chosen on validation)."""
    grid = PEFT_GRIDS.get(peft_type, DEFAULT_GRID)
    return grid[len(grid) // 2]


#: short key names -> config field, per peft method ("*": any method whose config has the field)
ALIASES = {"lora": {"alpha": "lora_alpha"}, "*": {"n": "n_frequency"}}
#: config fields set for every method whose config has them, unless the spec says otherwise
PEFT_FIXED = {"lora_dropout": 0.0, "bias": "none"}
#: settings a spec gets unless it gives them (shown in the row's label): the main job's LoRA r4; LoRA's alpha
#: defaults to 2 r (the main job's scale alpha / r = 2 at every rank; see ALPHA_PER_RANK)
PEFT_DEFAULT_ARGS = {"lora": {"r": 4}}
#: method -> alpha per unit of rank when a spec gives a rank but no alpha
ALPHA_PER_RANK = {"lora": 2}
#: peft types that are not weight adapters of target modules (prompts, mixtures): not comparable here
NOT_ADAPTERS = {"prompt_tuning", "multitask_prompt_tuning", "p_tuning", "prefix_tuning", "adaption_prompt",
                "cpt", "xlora", "poly", "trainable_tokens", "cartridge"}


@dataclass
class Row:
    """One setting of one method family: a point of the frontier, with its learning-rate grid."""

    family: str             # "lora", "vera", ..., a graph name, or "head"
    kind: str               # graph | peft | head
    source: str             # the graph (catalog name or file) or the peft method name
    args: dict[str, Any]    # graph parameters or peft config fields as the spec wrote them
    lr_grid: dict[str, list[float]] = field(default_factory=dict)  # role -> candidates (one: fixed)
    given: tuple[str, ...] = ()  # the learning-rate roles the spec itself set (command-line defaults leave them)
    targets: tuple[str, ...] | None = None  # the row's own target modules (None: --targets)

    @property
    def label(self) -> str:
        """``family key=value ... [on module,module]`` (the row's name in tables; its own targets
        included, learning rates not)."""
        label = " ".join([self.family] + [f"{k}={v}" for k, v in self.args.items()])
        return label + (f" on {','.join(self.targets)}" if self.targets else "")

    def settings(self) -> list[dict[str, float]]:
        """Every combination of the learning-rate candidates: ``[{role: lr}, ...]``."""
        roles = list(self.lr_grid)
        return [dict(zip(roles, combo)) for combo in itertools.product(*(self.lr_grid[r] for r in roles))]


def _value(text: str) -> Any:
    """A spec value: int, then float (``1e-2``, which YAML 1.1 reads as a string), else a YAML scalar."""
    text = text.strip()
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text) if text else ""


def parse(spec: str, kind: str) -> tuple[str, dict[str, list[Any]]]:
    """``"lora:r=1,2:lr=1e-3"`` -> ``("lora", {"r": [1, 2], "lr": [0.001]})``; DataError names a bad part."""
    name, *parts = spec.split(":")
    name = name.strip()
    if not name:
        raise DataError(f"{kind} spec {spec!r} has no method name. Fix: write e.g. lora:r=1,2,4")
    keys: dict[str, list[Any]] = {}
    for part in parts:
        key, sep, values = part.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise DataError(f"{kind} spec {spec!r}: {part!r} is not KEY=VALUE[,VALUE...]. "
                            f"Fix: write e.g. {name}:r=1,2:lr=1e-3,3e-3")
        keys[key.strip()] = [_value(v) for v in values.split(",")]
    return name, keys


def _lr_grid(keys: dict[str, list[Any]], defaults: dict[str, list[float]], spec: str) -> dict[str, list[float]]:
    """Pop the learning-rate keys out of ``keys``: role -> candidates (``defaults`` where not given)."""
    grid = {}
    for role, fallback in defaults.items():
        values = keys.pop(role, fallback)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise DataError(f"spec {spec!r}: {role}={v!r} is not a positive number")
        grid[role] = [float(v) for v in values]
    return grid


def _target_sets(keys: dict[str, list[Any]], spec: str) -> list[tuple[str, ...] | None]:
    """Pop the ``targets`` key out of ``keys``: one module tuple per value (``[None]``: not given)."""
    if TARGETS_KEY not in keys:
        return [None]
    sets = []
    for value in keys.pop(TARGETS_KEY):
        names = tuple(t.strip() for t in str(value).split(TARGETS_JOIN))
        if not all(names):
            raise DataError(f"spec {spec!r}: targets={value!r} has an empty module name. "
                            f"Fix: join module names with {TARGETS_JOIN!r}, e.g. targets=query{TARGETS_JOIN}value")
        sets.append(names)
    return sets


def _expand(family: str, kind: str, source: str, keys: dict[str, list[Any]],
            lr_grid: dict[str, list[float]], given: tuple[str, ...], spec: str) -> list[Row]:
    target_sets = _target_sets(keys, spec)
    names = list(keys)
    return [Row(family, kind, source, dict(zip(names, combo)), dict(lr_grid), given, targets)
            for targets in target_sets for combo in itertools.product(*(keys[n] for n in names))]


def peft_config_class(name: str):
    """peft's config class for a method name (``lora``, ``vera``, ``fourierft``, ``ia3``, ...)."""
    from ...errors import require

    peft = require("peft", "peft", "--compare")
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    by_name = {str(t.value).lower(): cls for t, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    key = name.lower()
    if key in NOT_ADAPTERS or key not in by_name:
        known = ", ".join(sorted(k for k in by_name if k not in NOT_ADAPTERS))
        raise DataError(f"--compare {name!r} is not a peft weight-adapter method (peft {peft.__version__}). "
                        f"Fix: use one of: head, {known}")
    return by_name[key]


def peft_fields(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with short names resolved to the fields of peft's config class; DataError for unknown fields."""
    import dataclasses

    cls = peft_config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    aliases = {**ALIASES["*"], **ALIASES.get(name, {})}
    out = {}
    for key, value in args.items():
        target = aliases.get(key, key)
        if target not in fields:
            target = key if key in fields else None
        if target is None:
            raise DataError(f"--compare {name}: {cls.__name__} has no field {key!r}. "
                            f"Fix: use fields of peft.{cls.__name__} (e.g. "
                            f"{', '.join(sorted(f for f in fields if not f.startswith('_'))[:8])}, ...)")
        out[target] = value
    return out


def compare_rows(specs: list[str], tune: bool = False) -> list[Row]:
    """Rows of ``--compare`` specs (peft methods and ``head``), in the order given. A spec without
    ``lr`` gets its method's grid (:data:`PEFT_GRIDS`) with ``tune``, else :func:`default_lr`."""
    rows: list[Row] = []
    for spec in specs:
        name, keys = parse(spec, "--compare")
        family = name.lower()
        given = tuple(k for k in LR_KEYS if k in keys)
        if family == "head":
            grid = _lr_grid(keys, {"lr_head": [HEAD_LR]}, spec)
            if keys:
                raise DataError(f"--compare {spec!r}: head takes only lr_head")
            rows.append(Row("head", "head", "head", {}, grid, given))
            continue
        peft_config_class(family)  # fail early on an unknown method
        lrs = list(PEFT_GRIDS.get(family, DEFAULT_GRID)) if tune else [default_lr(family)]
        grid = _lr_grid(keys, {"lr": lrs, "lr_head": [HEAD_LR]}, spec)
        keys = {**keys, **{k: [v] for k, v in PEFT_DEFAULT_ARGS.get(family, {}).items() if k not in keys}}
        expanded = _expand(family, "peft", family, keys, grid, given, spec)
        if family in ALPHA_PER_RANK and "alpha" not in keys:
            for row in expanded:
                row.args["alpha"] = ALPHA_PER_RANK[family] * row.args["r"]
        peft_fields(family, expanded[0].args)  # fail early on an unknown field
        rows += expanded
    return rows


def graph_rows(specs: list[str], overrides: dict[str, Any], default_args: dict[str, dict[str, Any]]) -> list[Row]:
    """Rows of ``--graph`` specs; ``overrides`` (``--set``) apply to every graph, before the spec's own keys."""
    from pathlib import Path

    rows: list[Row] = []
    for spec in specs:
        name, keys = parse(spec, "--graph")
        given = tuple(k for k in LR_KEYS if k in keys)
        grid = _lr_grid(keys, {r: [v] for r, v in GRAPH_LRS.items()}, spec)
        base = dict(default_args.get(name, {}))
        base.update(overrides)
        keys = {**{k: [v] for k, v in base.items() if k not in keys}, **keys}
        family = Path(name).stem if name.endswith((".yaml", ".yml")) else name
        rows += _expand(family, "graph", name, keys, grid, given, spec)
    return rows
