"""examples/hf_trainer.py and examples/trl_sft.py run as written (tiny models, a few steps), and each is one
line (plus its import) away from its LoRA version: swapping TnPeftConfig for LoraConfig runs too."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADAPTER = {"adapter_config.json", "adapter_model.safetensors"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _adapter(model):
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def test_hf_trainer_example_trains_saves_and_reloads(tmp_path):
    result = _load("hf_trainer").main(["--steps", "4", "-o", str(tmp_path)])
    assert ADAPTER <= set(os.listdir(tmp_path)) and "model.safetensors" not in os.listdir(tmp_path)
    assert {p for p in os.listdir(tmp_path) if p.startswith("checkpoint-")} == {"checkpoint-2", "checkpoint-4"}
    saved, loaded = _adapter(result["model"]), _adapter(result["reloaded"])
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_trl_sft_example_trains_saves_and_reloads(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    result = _load("trl_sft").main(["--steps", "3", "-o", str(tmp_path)])
    assert ADAPTER <= set(os.listdir(tmp_path)) and "model.safetensors" not in os.listdir(tmp_path)
    saved, loaded = _adapter(result["trainer"].model), _adapter(result["reloaded"])
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_the_lora_version_is_one_line_away(tmp_path, monkeypatch):
    """The example with its config line swapped for LoraConfig's (the README's diff) runs as well."""
    from peft import LoraConfig

    module = _load("hf_trainer")
    monkeypatch.setattr(module, "TnPeftConfig", lambda **kw: LoraConfig(r=4, **{k: v for k, v in kw.items()
                                                                              if k != "graph"}))
    result = module.main(["--steps", "2", "-o", str(tmp_path)])
    assert any("lora_A" in key for key in _adapter(result["model"]))
    readme = (EXAMPLES.parent / "README.md").read_text()
    for name in ("hf_trainer.py", "trl_sft.py"):
        lines = [line for line in (EXAMPLES / name).read_text().splitlines() if "TnPeftConfig(" in line]
        assert len(lines) == 1, f"{name}: the config is one line"
        assert f"\n+{lines[0]}\n" in readme, f"the README's diff shows {name}'s config line"
