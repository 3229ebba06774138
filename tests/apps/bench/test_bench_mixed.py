"""``tn-peft bench mixed`` on a tiny workload: load, memory, forward and generate columns side by side with peft's
LoRA, the mixed rows equal to each adapter run alone, its JSON and table, and the deprecated option names."""

from __future__ import annotations

import pytest
from model_helpers import run_bench


@pytest.mark.slow
def test_bench_mixed_smoke(tmp_path, capsys):
    printed, data = run_bench("mixed", ["--adapters", "2", "5", "--batch-size", "4", "--seq-len", "8", "--new-tokens",
                                        "2", "--repeats", "1", "--load-samples", "1"], tmp_path, capsys)
    assert "| adapters loaded | distinct in batch | tn_peft load s (all) |" in printed
    two, five = data["results"]
    assert (two["adapters"], two["distinct_in_batch"], five["distinct_in_batch"]) == (2, 2, 4)
    for r in data["results"]:
        assert r["max_abs_difference"] < 1e-4
        assert set(r["median_ms"]) == {"tn_peft mixed", "peft LoRA mixed"} and r["mixed_vs_peft_lora"] > 0
        assert r["tn_load_s"] > 0 and r["peft_load_s_per_adapter"] > 0
        assert r["tn_cached_adapters"] == r["distinct_in_batch"] and r["tn_cache_bytes_per_adapter"] > 0
        assert set(r["generate_tokens_per_s"]) == {"tn_peft", "peft LoRA"}


def test_old_option_names_still_work_with_a_note(capsys):
    import argparse

    from tn_peft.cli.bench import add_mixed_arguments

    parser = argparse.ArgumentParser()
    add_mixed_arguments(parser)
    args = parser.parse_args(["--rounds", "3", "--batch", "8", "--tokens", "4", "--out", "x.json"])
    assert (args.repeats, args.batch_size, args.seq_len, args.output) == (3, 8, 4, "x.json")
    assert "--rounds is spelled --repeats now" in capsys.readouterr().err
    assert parser.parse_args([]).adapters == [16, 256, 4096]
