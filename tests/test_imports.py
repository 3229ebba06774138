"""The package imports lazily: ``import tn_peft`` and the command line's --help never import torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tn_peft.bench import imports


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("code", [
    "import tn_peft; print(tn_peft.__version__, tn_peft.SpecError)",
    imports.CASES["tn-peft --help"],
    imports.CASES["tn-peft check --help"],
])
def test_no_torch_until_the_engine_is_used(code):
    result = _run(code + "\nimport sys; assert 'torch' not in sys.modules")
    assert result.returncode == 0, result.stderr


def test_lazy_names_and_submodules():
    result = _run("import sys, tn_peft\n"
                  "assert tn_peft.get_model.__module__ == 'tn_peft.model' and 'torch' in sys.modules\n"
                  "assert tn_peft.layers.TnLinear and 'load_graph' in dir(tn_peft)\n"
                  "from tn_peft import Adapter, AdapterConfig, Network, TnPeftModel, catalog, from_pretrained\n"
                  "try:\n    tn_peft.no_such_name\nexcept AttributeError as e:\n    print(e)\n")
    assert result.returncode == 0, result.stderr
    assert "has no attribute 'no_such_name'" in result.stdout


def test_planning_stays_outside_a_compiled_graph_once_an_adapter_exists():
    """torch._dynamo is imported when the first adapter is built, not with tn_peft."""
    result = _run("import sys, tn_peft\nassert 'torch._dynamo' not in sys.modules\n"
                  "a = tn_peft.load_graph('lora').build(8, 8)\n"
                  "assert a._plan_family.__func__._tn_peft_outside_graph\n")
    assert result.returncode == 0, result.stderr


def test_report_flags_each_target():
    medians = {"python": 0.05, "import torch": 2.0, "import tn_peft": 0.06, "engine": 2.2,
               "tn-peft --help": 0.1, "tn-peft check --help": 0.1}
    lines, ok = imports.report(medians)
    assert ok and lines[-1].endswith("met)") and "+0.200 s" in lines[-1]
    _, ok = imports.report({**medians, "engine": 2.5})
    assert not ok
    _, ok = imports.report({**medians, "tn-peft check --help": 0.4})
    assert not ok


def test_bench_import_runs_every_case():
    medians = imports.measure(rounds=1)
    assert set(medians) == set(imports.CASES) and all(v > 0 for v in medians.values())


def test_top_level_modules_import_one_way():
    """No import cycle among tn_peft's top-level modules, lazy imports included: spec imports network,
    targets imports config and layers, frames imports layers, and never the other way."""
    package = Path(__file__).resolve().parent.parent / "tn_peft"
    modules = {path.stem: path for path in package.glob("*.py") if path.stem != "__init__"}
    imports = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        imports[name] = found & set(modules) - {name}

    def cycle_from(start, path):
        for nxt in sorted(imports[path[-1]]):
            if nxt == start:
                return path + [start]
            if nxt not in path and nxt > start:  # each cycle once, from its smallest module
                found = cycle_from(start, path + [nxt])
                if found:
                    return found
        return None

    cycles = [c for c in (cycle_from(name, [name]) for name in sorted(modules)) if c]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
