"""Each fuzz surface, CI-sized, under the effect watch: only documented errors come out and no case has an
effect (``tn-peft bench fuzz --cases 2000`` is the full run)."""

from __future__ import annotations

import pytest
import torch

from tn_peft.apps.fuzz import checkpoint_surface, cli_surface, spec_surface
from tn_peft.apps.fuzz.outcomes import run_cases


@pytest.mark.parametrize("surface,module,cases", [("spec", spec_surface, 300), ("checkpoint", checkpoint_surface, 120),
                                                   ("cli", cli_surface, 200)])
def test_surface_has_no_crash_or_hang(tmp_path, surface, module, cases):
    pytest.importorskip("peft")
    torch.set_num_threads(1)
    report = run_cases(surface, module.make(tmp_path / "work"), cases, tmp_path / "crashes", folder=tmp_path / "work")
    assert report.bad == 0 and not report.effects, report.format()
    documented = sum(n for k, n in report.counts.items() if k.startswith(("error:", "usage", "exit")))
    assert documented > cases // 2 and report.counts["accepted"] > 0  # the cases reach both outcomes
    torch.set_num_threads(2)


def test_spec_cases_are_deterministic(tmp_path):
    first = spec_surface.make(tmp_path / "a")
    second = spec_surface.make(tmp_path / "b")
    assert [first(i).data for i in range(20)] == [second(i).data for i in range(20)]


@pytest.mark.parametrize("surface,module", [("spec", spec_surface), ("checkpoint", checkpoint_surface)])
def test_planted_payloads_have_no_effect(tmp_path, surface, module):
    """Only the cases that plant a payload (issue 28's families, in names and every string field), 60 a surface."""
    pytest.importorskip("peft")
    cases = module.make(tmp_path / "work")
    picked = [i for i in range(400) if "payload" in cases(i).label][:60]
    assert len(picked) == 60
    report = run_cases(surface, lambda k: cases(picked[k]), len(picked), tmp_path / "crashes", folder=tmp_path / "work")
    assert report.bad == 0 and not report.effects, report.format()
    assert report.counts["error: SpecError"] > 0
