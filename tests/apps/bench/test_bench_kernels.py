"""``tn-peft bench kernels`` (tn_peft/apps/bench/kernels.py): on a CPU, ``--check`` runs every fused kernel
under the Triton interpreter against its torch counterpart; timing needs CUDA and says so."""

import json

import pytest
import torch

pytest.importorskip("triton")

from cli_helpers import tn_peft  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_check_runs_every_kernel_on_cpu(tmp_path):
    out = tmp_path / "kernels.json"
    result = tn_peft("bench", "kernels", "--check", "-o", str(out), timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["ok"] and data["meta"]["check"]
    assert {row["case"] for row in data["rows"]} == {"lora", "svd", "quantum_peft", "kron"}
    assert all(row["max_relative_difference"] < 1e-4 for row in data["rows"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_timing_without_cuda_is_one_clear_message():
    result = tn_peft("bench", "kernels", timeout=120)
    assert result.returncode == 2
    assert "CUDA" in result.stdout and "--check" in result.stdout and "Traceback" not in result.stderr


def test_layer_shapes_parse_or_say_what_is_wrong():
    import argparse

    from tn_peft.cli.bench import layer_shape

    assert layer_shape("4096x1536") == (4096, 1536)
    for bad in ("4096", "0x8", "ax8", "8x8x8"):
        with pytest.raises(argparse.ArgumentTypeError, match="OUTxIN"):
            layer_shape(bad)
