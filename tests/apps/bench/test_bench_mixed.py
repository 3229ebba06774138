"""``tn-peft bench mixed`` on a tiny workload: three ways side by side, the mixed rows equal the one-by-one
rows, its JSON and table."""

from __future__ import annotations

from model_helpers import run_bench


def test_bench_mixed_smoke(tmp_path, capsys):
    printed, data = run_bench("mixed", ["--adapters", "1", "3", "--batch-size", "4", "--seq-len", "8", "--repeats", "1"],
                              tmp_path, capsys)
    assert "| adapters loaded | distinct in batch |" in printed
    one, three = data["results"]
    assert (one["adapters"], one["distinct_in_batch"], three["distinct_in_batch"]) == (1, 1, 3)
    for r in data["results"]:
        assert r["max_abs_difference"] < 1e-4
        assert set(r["median_ms"]) == {"tn_peft mixed", "tn_peft one by one", "peft LoRA mixed"}
        assert r["mixed_vs_one_by_one"] > 0 and len(r["times_ms"]["tn_peft mixed"]) == 1
