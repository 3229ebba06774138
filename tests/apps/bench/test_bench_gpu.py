"""``tn-peft bench gpu`` (tn_peft/apps/bench/gpu.py, gpu_checks.py, gpu_speed.py, device_image.py).

The dry run is the device run at small sizes on a CPU: kernels under the Triton interpreter, in a
child process where the packages the GPU image lacks are absent. It runs here in full, so that the
one command a borrowed GPU gets cannot rot.
"""

import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from cli_helpers import tn_peft  # noqa: E402

from tn_peft.apps.bench import device_image, gpu_checks
from tn_peft.graph.spec import catalog


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_the_dry_run_passes_every_section_as_on_the_device_image(tmp_path):
    out = tmp_path / "gpu.json"
    result = tn_peft("bench", "gpu", "--dry-run", "-o", str(out), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "bench gpu --dry-run: ok (all checks passed, 0 rows raised)" in result.stdout
    data = json.loads(out.read_text())
    assert data["ok"] and data["complete"] and data["environment"]["dry_run"] and not data["not_run"]
    checks = data["checks"]
    ran = [r for r in checks if "skipped" not in r]
    assert all(r["ok"] for r in ran)
    assert {r["subject"] for r in ran if r["kind"] == "kernel"} == set(gpu_checks.KERNELS)
    assert {r["subject"] for r in ran if r["kind"] == "graph"} == set(catalog())
    assert {r["mode"] for r in ran} == set(gpu_checks.MODES)
    # the fused kernels are what the graphs dispatch to (the plans were made for CUDA)
    assert {r["runs_as"] for r in ran if r["kind"] == "graph"} >= {"lowrank", "kron_rows", "torch program"}
    # every gradient is compared, the circuits' angles included
    qp = next(r for r in ran if r["subject"] == "quantum_peft" and r["mode"] == "fp32")
    assert any(".csd." in k or "weights" in k for k in qp["errors"]) and "grad x" in qp["errors"]
    # only the interpreter's bf16 tl.dot is skipped, and it says so
    assert all("bfloat16 tl.dot" in r["skipped"] for r in checks if "skipped" in r)
    for section in ("kernels", "step", "mixed"):
        assert data[section] and not any("error" in r for r in data[section]), section
    assert data["floor"]["rows"] and data["floor"]["card"]["source"] == "measured"
    models = {r["model"] for r in data["step"]}
    assert models == {"minilm", "llama7b-2layers"}
    assert {r["method"] for r in data["step"]} == {"peft lora r4", *catalog()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_without_cuda_the_device_run_is_one_clear_message():
    result = tn_peft("bench", "gpu", timeout=120)
    assert result.returncode == 2
    assert "CUDA" in result.stdout and "--dry-run" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_an_output_that_cannot_be_written_fails_at_once(tmp_path):
    result = tn_peft("bench", "gpu", "--dry-run", "--sections", "floor", "-o", str(tmp_path), timeout=300)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"cannot write --output {tmp_path}" in result.stderr and "Traceback" not in result.stderr
    assert "adapter term" not in result.stdout   # nothing was measured


def _under_blocker(body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh Python whose import system lacks what the GPU image lacks (``d``: the blocker)."""
    script = (f"import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('device_image', {device_image.__file__!r})\n"
              f"d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d); d.install()\n" + body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)


def test_the_blocker_makes_packages_absent_and_records_who_asked():
    body = ("import importlib.util\n"
            "assert importlib.util.find_spec('bitsandbytes') is None and importlib.util.find_spec('tensorly') is None\n"
            "try:\n    import cotengra\nexcept ModuleNotFoundError as err:\n    print('absent:', err)\n"
            "import peft, transformers, opt_einsum\n"
            "print('hits:', d.hits())\n")
    result = _under_blocker(body)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "absent: No module named 'cotengra'" in result.stdout
    hits = result.stdout.split("hits:")[1]
    assert "tensorly" in hits and "cotengra" in hits and "bitsandbytes" not in hits


def test_a_command_that_asks_for_a_lacked_package_fails_with_the_asker():
    """tn_peft's own lazy imports are fine until they are hit: `convert`'s TT-SVD needs tensorly."""
    body = ("from tn_peft.convert.tt import tt_svd\nimport torch\n"
            "try:\n    tt_svd(torch.randn(8, 8), [2, 4], [2, 4])\nexcept Exception as err:\n    print(type(err).__name__)\n"
            "sys.exit(d.main(['check', 'lora']))\n")
    result = _under_blocker(body)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "FAILED: the command asked for packages the GPU image lacks" in result.stderr
    assert "tensorly" in result.stderr and "tn_peft/convert/tt.py" in result.stderr


def test_the_engine_imports_without_what_the_device_lacks():
    """The path bench gpu takes (model, planner, kernels, bench modules) imports none of them."""
    body = ("import tn_peft\nfrom tn_peft import get_model, AdapterConfig, load_graph\n"
            "from tn_peft.apps.bench import gpu, gpu_checks, gpu_speed, kernels, mixed, step\n"
            "from tn_peft.planner.runtime import dispatch, fused, triton_kernels, switches\n"
            "load_graph('quantum_peft').build(64, 64).plan(8, device='cuda')\n"
            "print('hits:', d.hits())\n")
    result = _under_blocker(body)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("hits: []")


def test_a_mode_s_tolerance_holds_the_kernels_to_their_dtype():
    assert gpu_checks.MODES["fp32"].tolerance <= 1e-4
    assert gpu_checks.MODES["fp16"].tolerance < gpu_checks.MODES["bf16"].tolerance < 0.1
    graph = gpu_checks.Case("graph", "lora", 8, 8, 1)
    assert "fp16" not in [m.name for m in gpu_checks.modes_for(graph, list(gpu_checks.MODES.values()))]


def test_relative_error_says_missing_and_non_finite_gradients_are_failures():
    b = torch.ones(3)
    assert gpu_checks.relative_error(None, b) == float("inf")
    assert gpu_checks.relative_error(torch.tensor([1.0, float("nan"), 1.0]), b) == float("inf")
    assert gpu_checks.relative_error(None, None) == 0.0
    assert gpu_checks.relative_error(b * 1.01, b) == pytest.approx(0.01)


@pytest.mark.parametrize("name, fragment", [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100 PCIe"),
                                            ("NVIDIA H100 NVL", "H100 NVL"), ("NVIDIA H200", "H200")])
def test_known_cards_take_their_datasheet_peaks(monkeypatch, name, fragment):
    from tn_peft.apps.bench import gpu_speed

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    card = gpu_speed.peaks(torch.device("cuda"))
    assert (card["flops"], card["bandwidth"]) == gpu_speed.PEAKS[fragment]
    assert card["source"] == f"datasheet ({fragment})" and card["name"] == name


def test_other_cards_are_measured(monkeypatch):
    from tn_peft.apps.bench import gpu_speed

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A10G")
    monkeypatch.setattr(gpu_speed, "measured_peaks", lambda device: (1e14, 6e11))
    assert gpu_speed.peaks(torch.device("cuda")) == {"name": "NVIDIA A10G", "flops": 1e14, "bandwidth": 6e11,
                                                     "source": "measured"}


def test_measured_peaks_are_positive_rates():
    from tn_peft.apps.bench import gpu_speed

    flops, bandwidth = gpu_speed.measured_peaks(torch.device("cpu"), size=256, copy_bytes=1 << 22)
    assert flops > 1e6 and bandwidth > 1e6


def test_the_summary_names_failures_and_the_kernels_to_switch_off():
    from tn_peft.apps.bench.gpu import check_summary, slower_kernels

    rows = [{"kind": "kernel", "subject": "lowrank:lora", "out": 8, "in": 8, "tokens": 1, "rank": None, "mode": "fp32",
             "tolerance": 1e-4, "ok": False, "worst": 3e-3, "worst_of": "grad x", "runs_as": "lowrank"},
            {"kind": "graph", "subject": "tt", "out": 259, "in": 259, "tokens": 1, "rank": None, "mode": "fp32",
             "tolerance": 1e-4, "skipped": "the graph does not build at this size: ..."}]
    text = "\n".join(check_summary(rows))
    assert "0/1 passed, 1 failed, 1 skipped" in text and "FAILED lowrank:lora" in text and "grad x: 3.00e-03" in text
    assert "skipped 1: the graph does not build at this size" in text
    def row(kernel, tokens, ratio):
        return {"kernel": kernel, "out": 64, "in": 64, "tokens": tokens, "mode": "fp32", "ratio": ratio}

    slow = slower_kernels([row("kron_rows", 1, 0.5), row("kron_rows", 64, 1.2), row("kron_rows", 4096, 1.7),
                           row("lowrank", 1, 0.5), row("lowrank", 4096, 0.9),
                           row("circuit_chain", 1, 1.3), row("circuit_chain", 4096, 0.8)])
    assert len(slow) == 2
    assert "switches.switch_off('kron_rows'" in slow[0] and "from_tokens=64)" in slow[0] and "1.70x" in slow[0]
    assert "circuit_chain" in slow[1] and "fix the kernel" in slow[1] and "switch_off" not in slow[1]
