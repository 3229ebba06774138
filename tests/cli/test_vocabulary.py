"""One vocabulary for the command line (tn_peft/cli/vocabulary.py): every sub-command's parser is walked,
and one option name may have only one meaning: one row of the table, one destination, one type."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tn_peft.cli import BENCHMARKS, COMMANDS, main
from tn_peft.cli.vocabulary import RENAMED, VOCABULARY, commands_by_option, is_old, markdown_table, parsers

README = Path(__file__).resolve().parents[2] / "README.md"


def _options():
    """(command, option string, action) for every option of every sub-command, --help left out."""
    for command, parser in parsers().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    yield command, flag, action


def _type_name(action: argparse.Action) -> str:
    kind = type(action).__name__
    flag = "flag" if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or \
        "StoreTrue" in kind else "value"
    return f"{flag}:{getattr(action.type, '__name__', action.type)}"


def test_every_command_and_benchmark_is_walked():
    assert set(parsers()) == set(COMMANDS) | {f"bench {b}" for b in BENCHMARKS}


def test_every_option_is_in_the_vocabulary_table():
    missing = sorted({f"{flag} ({command})" for command, flag, _ in _options()
                      if flag.startswith("--") and not is_old(flag, command) and flag not in VOCABULARY})
    assert not missing, f"options without a row in tn_peft/cli/vocabulary.py VOCABULARY: {missing}"
    unused = sorted(set(VOCABULARY) - set(commands_by_option()))
    assert not unused, f"VOCABULARY rows no command takes: {unused}"


def test_one_option_name_has_one_meaning_across_commands():
    """Per option name (old spellings aside): one destination and one type everywhere it appears."""
    seen: dict[str, dict[tuple[str, str], list[str]]] = {}
    for command, flag, action in _options():
        if is_old(flag, command):
            continue
        seen.setdefault(flag, {}).setdefault((action.dest, _type_name(action)), []).append(command)
    clashes = {flag: meanings for flag, meanings in seen.items() if len(meanings) > 1}
    assert not clashes, f"one option name, several meanings: {clashes}"
    assert {a.dest for c, f, a in _options() if f == "-o"} == {"output"}  # -o is --output everywhere


def test_threads_and_device_have_one_default_everywhere():
    for name in ("--threads", "--device"):
        defaults = {command: action.default for command, flag, action in _options() if flag == name}
        assert len(defaults) >= 2 and set(defaults.values()) == {None}, (name, defaults)


def test_lists_are_space_separated_everywhere():
    """No option takes a comma-separated list: a list option takes several values (nargs)."""
    for command, flag, action in _options():
        if VOCABULARY.get(flag) and "(list)" in VOCABULARY[flag].unit and not is_old(flag, command):
            assert action.nargs in ("+", "*"), f"{command} {flag} is a list but takes one value"


def test_every_old_spelling_exists_and_names_its_new_one(capsys):
    found = {(command, flag) for command, flag, _ in _options()}
    for old in RENAMED:
        assert [c for c, f in found if f == old and is_old(f, c)], f"{old} is listed as renamed but no command takes it"
    # one of them end to end: the value still arrives, and one line names the new spelling
    args = parsers()["bench step"].parse_args(["--batch", "3", "--tokens", "7", "--rounds", "2", "--layers", "2"])
    assert (args.batch_size, args.seq_len, args.repeats, args.depth) == (3, 7, 2, 2)
    err = capsys.readouterr().err
    for old, new in (("--batch", "--batch-size"), ("--tokens", "--seq-len"), ("--rounds", "--repeats"),
                     ("--layers", "--depth")):
        assert f"{old} is spelled {new} now" in err
    assert err.count("\n") == 4


def test_a_comma_separated_list_still_works_with_a_note(capsys):
    args = parsers()["finetune"].parse_args(["--targets", "query,key", "value"])
    assert args.targets == ["query", "key", "value"]
    assert "--targets takes space-separated names now" in capsys.readouterr().err


def test_the_readme_has_the_table():
    """The README's vocabulary table is the one the code prints (python -m tn_peft.cli.vocabulary)."""
    assert markdown_table(commands_by_option()) in README.read_text()


@pytest.mark.parametrize("argv, words", [
    (["plan", "lora", "--tokens", "4", "--no-source"], "--tokens is spelled --rows now"),
    (["check", "lora", "--out", "8"], "--out is spelled --out-features now"),
])
def test_old_spellings_in_graph_commands_still_run(argv, words, capsys):
    assert main(argv) == 0
    assert words in capsys.readouterr().err
