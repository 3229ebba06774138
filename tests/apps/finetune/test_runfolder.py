"""Run folders: an earlier run is refused unless --overwrite, an unfinished run is marked, frontier skips it."""

from __future__ import annotations

import argparse
import json

import pytest

from tn_peft import DataError, UsageError
from tn_peft.apps.finetune import runfolder
from tn_peft.apps.finetune.report import load_runs


def _run_folder(folder, acc=0.7, *, finished=True):
    folder.mkdir(parents=True, exist_ok=True)
    run = {"method": {"name": "m"}, "seed": 0, "adapter_parameters": 10, "test_accuracy": acc,
           "validation_accuracy": [acc], "mean_step_seconds": 0.1, "peak_memory_bytes": 2**20}
    (folder / runfolder.METRICS).write_text(json.dumps({"runs": [run]}))
    if not finished:
        runfolder.mark_started(folder, "tn-peft finetune -o x")
    return folder


def test_a_folder_with_an_earlier_run_is_refused_unless_overwrite(tmp_path):
    runfolder.check_free(tmp_path / "new")  # a new folder
    runfolder.check_free(tmp_path)  # an existing folder without a run
    done = _run_folder(tmp_path / "done")
    with pytest.raises(UsageError, match="holds an earlier run \\(metrics.json\\).*--overwrite"):
        runfolder.check_free(done)
    runfolder.check_free(done, overwrite=True)
    stopped = tmp_path / "stopped"
    runfolder.mark_started(stopped, None)
    with pytest.raises(UsageError, match="holds a run that did not finish \\(INCOMPLETE\\)"):
        runfolder.check_free(stopped)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        runfolder.check_free(tmp_path / "file", overwrite=True)


def test_the_marker_lives_from_start_to_finish(tmp_path):
    folder = tmp_path / "run"
    marker = runfolder.mark_started(folder, "tn-peft finetune")
    assert runfolder.is_incomplete(folder) and json.loads(marker.read_text())["command"] == "tn-peft finetune"
    runfolder.mark_finished(folder)
    assert not runfolder.is_incomplete(folder) and folder.is_dir()


def test_incomplete_runs_are_skipped_with_a_message(tmp_path):
    done = _run_folder(tmp_path / "done", 0.7)
    stopped = _run_folder(tmp_path / "stopped", 0.9, finished=False)
    with pytest.warns(UserWarning, match=f"skipping {stopped}: its run has not finished"):
        runs = load_runs([done, stopped / runfolder.METRICS])
    assert [r["test_accuracy"] for r in runs] == [0.7]


def test_a_frontier_file_in_an_unfinished_run_is_skipped_too(tmp_path):
    from tn_peft.apps.finetune.frontier import load_rows

    stopped = tmp_path / "stopped"
    runfolder.mark_started(stopped, None)
    (stopped / "frontier.json").write_text(json.dumps({"rows": []}))  # written before metrics.json
    for path in (stopped, stopped / "frontier.json"):
        with pytest.warns(UserWarning, match="its run has not finished"):
            assert load_rows([path]) == []


def test_frontier_command_skips_an_incomplete_run(tmp_path, capsys):
    from tn_peft.cli import main

    pytest.importorskip("matplotlib")
    _run_folder(tmp_path / "stopped", finished=False)
    with pytest.warns(UserWarning, match="its run has not finished"):
        assert main(["frontier", str(tmp_path / "stopped"), "-o", str(tmp_path / "f")]) == 2
    assert "no run with a test accuracy" in capsys.readouterr().err


def test_finetune_refuses_the_folder_before_reading_anything(tmp_path):
    from tn_peft.apps.finetune.run import run
    from tn_peft.cli.finetune import add_arguments

    done = _run_folder(tmp_path / "done")
    before = (done / runfolder.METRICS).read_text()
    args = add_arguments(argparse.ArgumentParser()).parse_args(["--data", str(tmp_path / "missing.csv"),
                                                                "-o", str(done)])
    with pytest.raises(UsageError, match="holds an earlier run"):
        run(args)
    assert (done / runfolder.METRICS).read_text() == before
    args.overwrite = True
    with pytest.raises(DataError, match="missing.csv: no such file"):  # past the folder check, to the data
        run(args)
