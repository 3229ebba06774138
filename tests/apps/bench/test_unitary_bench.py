"""tn_peft.apps.bench.unitary runs end to end on tiny sizes and writes its JSON."""

import json

import pytest

from tn_peft.apps.bench import unitary
from tn_peft.cli import main


def test_bench_unitary_tiny(tmp_path):
    out = tmp_path / "unitary.json"
    code = main(["bench", "unitary", "--sizes", "8", "--ranks", "2", "--repeats", "2", "--min-repeats", "1", "--budget", "1",
              "--taylor-orders", "1", "4", "-o", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    maps = {r["map"]: r for r in data["results"]}
    assert set(maps) == set(unitary.OURS + unitary.TORCH)
    assert maps["pauli"]["params"] == 3 * 3 - 2 and maps["exp"]["params"] == 8 * 2 - 3
    assert maps["pauli"]["time_vs_pauli"] == 1.0
    for name in unitary.TORCH:  # the ratios the summary prints, against the pauli row
        assert maps[name]["time_vs_pauli"] == pytest.approx(maps[name]["median_ms"] / maps["pauli"]["median_ms"])
    assert all(r["orthonormality_error"] < 1e-5 for name, r in maps.items() if name != "taylor")
    assert [r["order"] for r in data["taylor"]] == [1, 4]
