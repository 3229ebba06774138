"""Fuzzing the graph-spec loader: random YAML / JSON structures, byte mutations, structural mutations and
planted code payloads (:data:`~.mutate.CODE_PAYLOADS`) of every catalog file, each loaded, resolved,
planned (its dW program's source), built, applied and differentiated, as ``tn-peft check`` and training would."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import yaml

from ...errors import TnPeftError
from ...graph.spec import CATALOG_DIR, TOP_KEYS, catalog, load_graph
from .mutate import mutate_bytes, mutate_structure, plant_payload, random_value
from .outcomes import Case

#: layer shapes a loaded spec is built for (a square, a non-power-of-two, a prime)
SHAPES = ((8, 8), (12, 16), (7, 5))


def _exercise(path: Path, shape: tuple[int, int]) -> None:
    import torch

    from ...planner.cost import CostModel
    from ...planner.runtime.dispatch import running_plan

    net = load_graph(path)
    out_features, in_features = shape
    net.resolve(in_features, out_features)
    adapter = net.build(in_features, out_features)
    running_plan(adapter.problem, CostModel.for_device("cpu"), initial=net.delta).source()
    adapter(torch.randn(3, in_features)).sum().backward()


def make(workdir: str | Path):
    """The spec surface: case i -> a graph file in ``workdir`` and the call that loads and builds it."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = {name: (CATALOG_DIR / f"{name}.yaml").read_bytes() for name in catalog()}
    names = sorted(files)

    def case(i: int) -> Case:
        rng = random.Random(i)
        mode = i % 4
        name = names[rng.randrange(len(names))]
        if mode == 0:  # a random structure, as YAML or JSON
            value = {rng.choice(sorted(TOP_KEYS)): random_value(rng, 1, tuple(TOP_KEYS)) for _ in range(rng.randint(0, 6))}
            if rng.random() < 0.5:
                value["nodes"] = [random_value(rng, 1) for _ in range(rng.randint(0, 3))]
            as_json = rng.random() < 0.3
            text = json.dumps(value, default=str) if as_json else yaml.safe_dump(value, allow_unicode=True)
            data, label, suffix = text.encode("utf-8", "surrogatepass"), "random structure", ".json" if as_json else ".yaml"
        elif mode == 1:
            data, label, suffix = mutate_bytes(files[name], rng), f"bytes of {name}.yaml", ".yaml"
        elif mode == 2:
            spec = yaml.safe_load(files[name])
            data = yaml.safe_dump(mutate_structure(spec, rng, tuple(TOP_KEYS)), allow_unicode=True).encode()
            label, suffix = f"structure of {name}.yaml", ".yaml"
        else:  # a code payload planted in a name or a string field, written as JSON (the reproduced attack)
            spec, planted = plant_payload(yaml.safe_load(files[name]), rng)
            data, label, suffix = json.dumps(spec).encode(), f"payload in {name}: {planted}", ".json"
        path = workdir / f"case{suffix}"
        path.write_bytes(data)
        shape = SHAPES[rng.randrange(len(SHAPES))]
        return Case(label, data, lambda: _exercise(path, shape), suffix)

    def warm_up() -> None:
        for name in names:
            for shape in SHAPES:
                with contextlib.suppress(TnPeftError):  # kron cannot fold a prime size: a refusal warms up too
                    _exercise(CATALOG_DIR / f"{name}.yaml", shape)

    case.warm_up = warm_up
    return case
