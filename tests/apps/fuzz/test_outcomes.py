"""tn_peft.apps.fuzz.outcomes: classification, the hang alarm and the saved first input of each crash class."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tn_peft.errors import CheckpointError, SpecError
from tn_peft.apps.fuzz.outcomes import Case, classify, run_case, run_cases


def _raise(exc):
    def call():
        raise exc
    return call


def test_classify():
    assert classify(None) == "accepted"
    assert classify(SpecError("x")) == "error: SpecError" and classify(CheckpointError("y")) == "error: CheckpointError"
    assert classify(SystemExit(2)) == "usage error (exit 2)"
    assert classify(KeyError("k")) == "crash: KeyError" and classify(SystemExit(3)) == "crash: SystemExit(3)"


def test_a_case_past_its_limit_is_a_hang_and_return_codes_are_outcomes():
    def spin():
        while True:
            time.sleep(0.01)

    assert run_case(Case("spin", b"", spin), seconds=0.2)[0] == "hang"
    assert run_case(Case("exit", b"", lambda: 2))[0].startswith("exit 2")
    assert run_case(Case("ok", b"", lambda: 0))[0] == "accepted"


def test_run_cases_counts_and_saves_the_first_input_of_each_crash_class(tmp_path):
    calls = [_raise(ValueError("a")), _raise(ValueError("b")), _raise(SpecError("c")), lambda: None]
    report = run_cases("demo", lambda i: Case(f"case {i}", f"input {i}".encode(), calls[i % 4]), 8, tmp_path)
    assert report.counts == {"crash: ValueError": 4, "error: SpecError": 2, "accepted": 2}
    assert report.bad == 4 and len(report.crashes) == 1  # one crash class: the same type from the same place
    (saved,) = report.crashes.values()
    assert Path(saved).read_bytes() == b"input 0"
    record = json.loads((tmp_path / "demo-000.json").read_text())
    assert record["case"] == 0 and "ValueError: a" in record["traceback"]
    assert "crash: ValueError" in report.format()
