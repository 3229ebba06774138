"""Done-criteria with real checkpoints made by peft: LoRA -> svd loads in tn_peft and gives the LoRA
model's outputs (1e-5, fp32); export back to LoRA loads in peft and gives them again."""

import copy

import peft
import pytest
import torch
from convert_helpers import (
    fast_map,
    make_lora,
    max_diff,
    outputs,
    stiefel_maps,
    token_batch,
)

from tn_peft.convert import from_lora, to_lora
from tn_peft.model import TnPeftModel

TOL = 1e-5


def round_trip(base, lora_model, tmp_path, batch, to="svd", tol=TOL, **kwargs):
    expected = outputs(lora_model, batch)
    report = from_lora(tmp_path / "lora", tmp_path / to, to, base_model=base, **kwargs)
    tn_model = TnPeftModel.from_pretrained(copy.deepcopy(base), tmp_path / to)
    assert max_diff(outputs(tn_model, batch), expected) < tol
    back = to_lora(tmp_path / to, tmp_path / "back")
    assert back.exact
    peft_model = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "back")).eval()
    assert max_diff(outputs(peft_model, batch), expected) < tol
    assert max_diff(outputs(base, batch), expected) > 1e-2  # the adapter really changes the outputs
    return report


@pytest.mark.parametrize("map", stiefel_maps())
def test_gpt2_conv1d_rank_pattern(gpt2_base, tmp_path, map):
    lora = make_lora(gpt2_base, tmp_path / "lora", r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"],
                     fan_in_fan_out=True, rank_pattern={"h.1.attn.c_proj": 2}, alpha_pattern={"c_attn": 5})
    report = round_trip(gpt2_base, lora, tmp_path, token_batch(), map=map)
    assert report.exact and report.max_error < 1e-6 and len(report.layers) == 6


def test_llama_gqa_rslora(llama_base, tmp_path):
    lora = make_lora(llama_base, tmp_path / "lora", r=4, lora_alpha=16, use_rslora=True,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                     rank_pattern={"k_proj": 3})
    report = round_trip(llama_base, lora, tmp_path, token_batch(), map=fast_map())
    shapes = {r.shape for r in report.layers}
    assert (32, 64) in shapes and (64, 96) in shapes  # GQA k/v and the MLP down projection


def test_minilm_modules_to_save(minilm_base, tmp_path):
    lora = make_lora(minilm_base, tmp_path / "lora", r=4, lora_alpha=8, target_modules=["query", "value"],
                     modules_to_save=["pooler.dense"])
    with torch.no_grad():  # make the saved copy differ from the base model's pooler
        lora.base_model.model.pooler.dense.modules_to_save["default"].weight.mul_(0.5)
    lora.save_pretrained(str(tmp_path / "lora"))
    batch = token_batch(vocab=1000, length=9)
    expected = lora(**batch).pooler_output.detach()
    report = round_trip(minilm_base, lora, tmp_path, batch, map=fast_map())
    assert report.copied == ["pooler.dense.bias", "pooler.dense.weight"]
    tn_model = TnPeftModel.from_pretrained(copy.deepcopy(minilm_base), tmp_path / "svd")
    assert max_diff(tn_model(**batch).pooler_output.detach(), expected) < TOL


@pytest.mark.parametrize("to", ["tt", "ttd"])
def test_tt_full_rank_is_exact(gpt2_base, tmp_path, to):
    lora = make_lora(gpt2_base, tmp_path / "lora", r=3, lora_alpha=6, target_modules=["c_proj"],
                     fan_in_fan_out=True)
    extra = {"map": fast_map(), "center": 2} if to == "ttd" else {}
    report = round_trip(gpt2_base, lora, tmp_path, token_batch(), to=to, **extra)
    assert report.exact
    # an exact TT form keeps every degree of freedom of dW's factorization: larger than the LoRA, and said so
    assert report.parameters > report.source_parameters and report.warnings


@pytest.mark.slow
@pytest.mark.parametrize("map", stiefel_maps())
def test_minilm_every_map(minilm_base, tmp_path, map):
    # 18 layers of large random factors move the hidden states far (|h| ~ 10): fp32 rounding of two
    # different contraction orders then reaches ~1e-5 absolute, so this stress test is relative.
    lora = make_lora(minilm_base, tmp_path / "lora", r=8, lora_alpha=16, target_modules=["query", "value", "dense"])
    batch = token_batch(vocab=1000, length=9)
    scale = float(outputs(lora, batch).abs().max())
    report = round_trip(minilm_base, lora, tmp_path, batch, map=map, tol=TOL * max(1.0, scale))
    assert report.exact
