"""``tn-peft finetune`` checks everything it can before any work (tn_peft/apps/finetune/run.py
check_before_work): options and their combinations, every --graph and --compare setting (built as a
config), the model folder and the run folder; one error names the first problem, and nothing is read,
loaded or trained before it."""

from __future__ import annotations

import pytest

from tn_peft.apps.finetune import run as run_module
from tn_peft.cli import main


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the run gets as far as reading data or loading a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the command line was checked")

    monkeypatch.setattr(run_module, "load_dataset", refuse)
    monkeypatch.setattr(run_module, "load_encoder", refuse)


@pytest.mark.parametrize("argv, words", [
    (["--compare", "lora:r=abc"], "r='abc' is not a valid value of peft's LoraConfig.r"),
    (["--compare", "lora:r=4", "vera:r=1.5.2"], "vera r=1.5.2"),
    (["--compare", "lora:nosuch=1"], "has no field 'nosuch'"),
    (["--graph", "quantum_peft:layers=abc"], "layers must be an integer"),
    (["--graph", "quantum_peft", "tt:cores=0"], "tt"),
    (["--graph", "quantum_peft:budget=1500:budget_mode=shrink"], "budget_mode must be one of prune, grow"),
    (["--graph", "quantum_peft:budget=1500:budget_mode=grow:layers=3"], "adds depth layers in pairs"),
    (["--graph", "quantum_peft:budget_mode=grow"], "budget_mode=grow needs a budget"),
    (["--set", "nosuch=1"], "has no parameter 'nosuch'"),
    (["--steps", "10", "--epochs", "1"], "--epochs and --steps both given"),
    (["--steps", "0"], "--steps 0: must be at least 1"),
    (["--batch-size", "-2"], "--batch-size -2: must be at least 1"),
    (["--tune-seeds", "0"], "--tune-seeds without --tune"),
    (["--no-floor"], "--no-floor without --compare"),
    (["--model", "no/such/folder"], "--model no/such/folder: not a Hugging Face model folder"),
])
def test_a_bad_command_line_fails_before_any_work(argv, words, no_work, tmp_path, capsys):
    assert main(["finetune", *argv, "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("tn-peft: error:") == 1, err
    assert not (tmp_path / "run").exists()


def test_the_first_problem_is_named_when_there_are_several(no_work, tmp_path, capsys):
    """A bad peft setting after a good graph: the graph's row is not trained first (the issue's case)."""
    assert main(["finetune", "--graph", "quantum_peft", "--compare", "lora:r=abc", "--steps", "0",
                 "-o", str(tmp_path)]) == 2
    assert "--steps 0" in capsys.readouterr().err  # options first, then specs, then the folder, then data


def test_a_folder_holding_a_run_is_refused_before_the_data_is_read(no_work, tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{}")
    assert main(["finetune", "-o", str(tmp_path)]) == 2
    assert "holds an earlier run" in capsys.readouterr().err


def test_one_rule_decides_the_targets():
    """Every row whose spec names no targets= adapts --targets (default query, value): the default graph,
    the same graph named, and the peft rows alike."""
    from tn_peft.cli.vocabulary import parsers

    parser = parsers()["finetune"]
    for argv in ([], ["--graph", "quantum_peft"], ["--compare", "lora"]):
        args = parser.parse_args(argv)
        methods = run_module.methods_from_args(args, 100)
        assert {tuple(m.targets) for m in methods if m.kind != "head"} == {("query", "value")}, argv
    args = parser.parse_args(["--targets", "query", "key", "--compare", "lora", "--graph",
                              "quantum_peft", "tt:targets=value"])
    assert [m.targets for m in run_module.methods_from_args(args, 100)] == [
        ["query", "key"], ["value"], ["query", "key"], ["query", "key"]]
