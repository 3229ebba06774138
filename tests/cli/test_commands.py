import subprocess
import sys

import pytest

from tn_peft.cli import main


def test_check_prints_everything(capsys):
    assert main(["check", "lora", "--in-features", "384", "--out-features", "1536", "--set", "rank=8"]) == 0
    out = capsys.readouterr().out
    assert "B  dense" in out and "out=1536, r=8" in out and "einsum: ab,bc->ac" in out
    assert "trainable parameters: 15360" in out


def test_errors_print_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - {name: A, kind: nope, legs: [out, in]}\n")
    proc = subprocess.run([sys.executable, "-m", "tn_peft.cli", "check", str(bad)], check=False, capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown node kind 'nope'" in proc.stderr and str(bad) in proc.stderr


def test_bad_set_value(capsys):
    """--set is checked as the command line is read: a usage error (exit 2), one message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "lora", "--set", "rank"])
    assert exit_info.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err


def test_draw_writes_png(tmp_path):
    target = tmp_path / "tt.png"
    assert main(["draw", "tt", "--in-features", "384", "--out-features", "384", "-o", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finetune_through_the_cli_records_its_command_line(monkeypatch):
    # metrics.json "command" comes from args.command_line; tn-peft finetune must set it too
    import importlib

    finetune_run = importlib.import_module("tn_peft.apps.finetune.run")
    seen = {}

    def fake_run(args):
        seen["args"] = args
        return 0

    monkeypatch.setattr(finetune_run, "run", fake_run)
    assert main(["finetune", "--steps", "3", "-o", "my runs/a", "--set", "rank=8", "layers=2"]) == 0
    args = seen["args"]
    assert args.command_line == "tn-peft finetune --steps 3 -o 'my runs/a' --set rank=8 layers=2"
    assert args.overrides == [("rank", 8), ("layers", 2)] and args.output == "my runs/a"


def test_out_means_one_thing_in_graph_commands(tmp_path, capsys):
    """--out-features is the layer's output size, -o/--output the file: `draw tt --out tt.png` (the
    issue's trap) is one clear error, and the old spellings --in/--out still work with a one-line note."""
    import pytest

    with pytest.raises(SystemExit):
        main(["draw", "tt", "--out", "tt.png"])
    assert "the file to write is -o/--output" in capsys.readouterr().err
    target = tmp_path / "tt.png"
    assert main(["draw", "tt", "--in", "64", "--out", "64", "-o", str(target)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "--out is spelled --out-features now" in err and target.is_file()
