"""``tn-peft bench step`` on a tiny workload: it runs, alternates, writes its JSON and table; also on an
nf4 base."""

from __future__ import annotations

import pytest
from model_helpers import run_bench


def test_bench_step_smoke(tmp_path, capsys):
    printed, data = run_bench("step", ["--batch-size", "2", "--seq-len", "8", "--repeats", "2", "--warmup", "1",
                                       "--no-unbatched"], tmp_path, capsys)
    assert "| lora r4 (peft) |" in printed and "| quantum_peft r4 L1 |" in printed
    lora, qp = data["results"]["lora r4 (peft)"], data["results"]["quantum_peft r4 L1"]
    assert lora["trainable_params"] == 6 * 2 * 4 * (384 + 384)
    assert qp["param_ratio"] >= 10 and len(qp["step_ms"]) == 2
    assert data["verdict"]["param_met"] is True
    door = data["results"]["quantum_peft r4 L1 (get_peft_model)"]
    assert door["trainable_params"] == qp["trainable_params"] and len(door["step_ms"]) == 2
    assert "peft front door (get_peft_model + TnPeftConfig) / tn_peft.get_model step time:" in printed
    assert data["verdict"]["peft_door_ratio"] > 0


def test_bench_step_on_an_nf4_base(tmp_path, capsys):
    pytest.importorskip("bitsandbytes")
    printed, data = run_bench("step", ["--batch-size", "2", "--seq-len", "8", "--repeats", "1", "--warmup", "1",
                                       "--no-unbatched", "--quantize-base", "nf4"], tmp_path, capsys)
    assert "all-MiniLM-L6-v2, nf4 base" in printed
    assert data["config"]["quantize_base"] == "nf4"
    assert data["results"]["quantum_peft r4 L1"]["trainable_params"] == 672   # as on the float base
    assert data["results"]["lora r4 (peft)"]["trainable_params"] == 36_864
