"""The data-file fuzz surface, CI-sized: only DataError comes out, and its cases reach both outcomes."""

from __future__ import annotations

from tn_peft.apps.fuzz import data_surface
from tn_peft.apps.fuzz.outcomes import run_case, run_cases


def test_data_surface_has_no_crash_hang_or_effect(tmp_path):
    # under the effect watch, as tn-peft bench fuzz runs it: no new import, no write outside its folder
    report = run_cases("data", data_surface.make(tmp_path / "work"), 400, tmp_path / "crashes",
                       folder=tmp_path / "work")
    assert report.bad == 0 and not report.effects, report.format()
    assert set(report.counts) == {"accepted", "error: DataError"}
    assert report.counts["accepted"] > 80 and report.counts["error: DataError"] > 80, report.format()


def test_every_fault_is_drawn_and_cases_are_deterministic(tmp_path):
    first, second = data_surface.make(tmp_path / "a"), data_surface.make(tmp_path / "b")
    labels = [first(i).label for i in range(300)]
    assert {label.split(":")[0] for label in labels} == set(data_surface.FAULTS)
    assert [first(i).data for i in range(30)] == [second(i).data for i in range(30)]


def test_a_broken_promise_is_a_crash(tmp_path, monkeypatch):
    # the checks on accepted files can fail: a loader that keeps a one-class file is caught
    from tn_peft.apps.finetune import userdata

    monkeypatch.setattr(userdata, "check_classes", lambda *a: None)
    path = tmp_path / "one.csv"
    path.write_text("text,label\n" + "".join(f"t{i},a\n" for i in range(10)))
    case = data_surface.Case("one class", path.read_bytes(),
                             lambda: data_surface._exercise(path, {}, (None, None, None), 10))
    outcome, error = run_case(case)
    assert outcome == "crash: AssertionError", (outcome, error)
