import subprocess
import sys

from tn_peft.cli import main


def test_check_prints_everything(capsys):
    assert main(["check", "lora", "--in", "384", "--out", "1536", "--set", "rank=8"]) == 0
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
    assert main(["check", "lora", "--set", "rank"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_draw_writes_png(tmp_path):
    target = tmp_path / "tt.png"
    assert main(["draw", "tt", "--in", "384", "--out", "384", "-o", str(target)]) == 0
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
    assert main(["finetune", "--steps", "3", "--out", "my runs/a", "--set", "rank=8"]) == 0
    args = seen["args"]
    assert args.command_line == "tn-peft finetune --steps 3 --out 'my runs/a' --set rank=8"
    assert args.graph_args == [("rank", 8)]
