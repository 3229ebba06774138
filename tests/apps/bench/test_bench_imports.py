"""``tn-peft bench import``: its report and its cases."""

from tn_peft.apps.bench import imports


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
