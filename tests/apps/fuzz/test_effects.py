"""The effect watch: each kind of effect is caught (and blocked) inside a case, allowed ones pass."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import tn_peft
from tn_peft.apps.fuzz.effects import EffectBlocked, EffectWatch
from tn_peft.apps.fuzz.outcomes import Case, run_cases


@pytest.fixture
def watch(tmp_path):
    (tmp_path / "run").mkdir()
    return EffectWatch.get(), tmp_path / "run"


def _attempt(watch_and_folder, action) -> list[str]:
    watch, folder = watch_and_folder
    with watch.case(folder):
        try:
            action()
        except EffectBlocked:
            pass
    return list(watch.effects)


def test_a_process_is_an_effect(watch, tmp_path):
    assert _attempt(watch, lambda: os.system(f"touch {tmp_path}/pwned"))[0].startswith("os.system")
    assert _attempt(watch, lambda: subprocess.Popen(["true"]))[0].startswith("subprocess.Popen")
    assert not (tmp_path / "pwned").exists()  # blocked before it ran


def test_a_new_import_is_an_effect_and_a_loaded_one_is_not(watch):
    sys.modules.pop("tabnanny", None)
    effects = _attempt(watch, lambda: __import__("tabnanny"))
    assert effects and "tabnanny" in effects[0] and "tabnanny" not in sys.modules
    assert _attempt(watch, lambda: __import__("os")) == []


def test_a_write_outside_the_folder_is_an_effect_and_inside_it_is_not(watch, tmp_path):
    folder = watch[1]
    assert _attempt(watch, lambda: (folder / "ok.txt").write_text("fine")) == []
    assert _attempt(watch, lambda: open(folder / "ok.txt").read()) == []
    assert _attempt(watch, lambda: open(tmp_path / "outside.txt", "w"))[0].startswith("open for writing")
    assert _attempt(watch, lambda: os.open(tmp_path / "flags.txt", os.O_WRONLY | os.O_CREAT))
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "flags.txt").exists()


def test_foreign_code_is_an_effect_and_a_checked_program_is_not(watch):
    assert _attempt(watch, lambda: exec("1 + 1"))[0].startswith("exec of code from '<string>'")
    assert _attempt(watch, lambda: eval("1 + 1"))
    adapter = tn_peft.load_graph("lora", rank=3).build(in_features=9, out_features=7)  # a shape no other test planned: a fresh compile
    assert _attempt(watch, lambda: adapter(torch.randn(2, 9)).sum().backward()) == []


def test_run_cases_counts_and_saves_a_case_with_an_effect(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    calls = [lambda: None, lambda: os.system("true"), lambda: exec("x = 1")]
    report = run_cases("demo", lambda i: Case(f"case {i}", b"input", calls[i % 3]), 6, tmp_path / "saved", folder=folder)
    assert report.counts["accepted"] == 2 and report.counts["crash: EffectBlocked"] == 4
    assert sum(report.effects.values()) == 4 and report.bad == 4
    assert "effect" in report.format().splitlines()[1]
    assert len(list((tmp_path / "saved").glob("*.json"))) == 3  # two effect classes, one crash class (both raised in the hook)
