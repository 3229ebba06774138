"""The package imports lazily: ``import tn_peft`` and the command line's --help never import torch."""

import subprocess
import sys

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
