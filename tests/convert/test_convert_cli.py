"""CLI, refusals and safety: --force, atomic output, inputs untouched, base-model shapes, Pauli fit report."""

import copy
import hashlib
import json

import pytest
import torch
from convert_helpers import (
    fast_map,
    make_lora,
)

from tn_peft.cli import main
from tn_peft.convert import from_lora, inspect_dir, to_lora
from tn_peft.errors import CheckpointError
from tn_peft.model import TnPeftModel


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture
def gpt2_lora(gpt2_base, tmp_path):
    model = make_lora(gpt2_base, tmp_path / "lora", r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"],
                      fan_in_fan_out=True)
    return model, tmp_path / "lora"


def test_cli_convert_inspect_export(gpt2_lora, tmp_path, capsys):
    _, lora_dir = gpt2_lora
    before = digest(lora_dir)
    assert main(["convert", str(lora_dir), "-o", str(tmp_path / "svd"), "--to", "svd", "--map", fast_map()]) == 0
    out = capsys.readouterr().out
    assert "svd: " in out and "exact" in out and "transformer.h.1.mlp.c_proj" in out
    assert main(["inspect", str(tmp_path / "svd")]) == 0
    out = capsys.readouterr().out
    assert "tn_peft (svd)" in out and "orthonormality error" in out and "U=" in out and "|dW|_F" in out
    assert main(["inspect", str(lora_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["type"] == "PEFT LoRA" and len(info["layers"]) == 6
    assert main(["export-lora", str(tmp_path / "svd"), "-o", str(tmp_path / "back"), "--energy", "0.999"]) == 0
    assert (tmp_path / "back" / "adapter_model.safetensors").is_file()
    # an existing non-empty output folder is refused (exit 2, one message), then replaced with --overwrite
    assert main(["convert", str(lora_dir), "-o", str(tmp_path / "svd")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(lora_dir), "-o", str(tmp_path / "svd"), "--overwrite", "--map", fast_map()]) == 0
    assert main(["convert", str(lora_dir), "-o", str(lora_dir), "--overwrite"]) == 2  # never over the input
    capsys.readouterr()
    # the old spellings still work, each with a one-line note naming the new one
    assert main(["export-lora", str(tmp_path / "svd"), str(tmp_path / "back2"), "--rank", "2", "--force"]) == 0
    err = capsys.readouterr().err
    assert "--rank is spelled --lora-rank now" in err and "--force is spelled --overwrite now" in err
    assert "OUT_DIR (a second positional argument) is spelled -o/--output now" in err
    assert digest(lora_dir) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_inspect_matches_loaded_norms(gpt2_base, gpt2_lora, tmp_path):
    _, lora_dir = gpt2_lora
    from_lora(lora_dir, tmp_path / "svd", map=fast_map())
    lora_info, tn_info = inspect_dir(lora_dir), inspect_dir(tmp_path / "svd")
    for a, b in zip(lora_info["layers"], tn_info["layers"]):
        assert a["name"] == b["name"] and abs(a["dW"]["fro"] - b["dW"]["fro"]) < 1e-4 * a["dW"]["fro"]
        assert all(err < 1e-5 for err in b["unitary_nodes"].values()) and set(b["unitary_nodes"]) == {"U", "V"}


def test_shape_mismatch_with_base_model(gpt2_lora, llama_base, gpt2_base, tmp_path):
    _, lora_dir = gpt2_lora
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: key .*transformer.h.0.attn.c_attn"):
        from_lora(lora_dir, tmp_path / "x", base_model=llama_base)
    import transformers

    wider = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=101))
    with pytest.raises(CheckpointError, match=r"key 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'.*\(192, 64\)"):
        from_lora(lora_dir, tmp_path / "x", base_model=wider)
    assert not (tmp_path / "x").exists()
    from_lora(lora_dir, tmp_path / "svd", map=fast_map())
    with pytest.raises(CheckpointError, match="c_attn"):
        TnPeftModel.from_pretrained(wider, tmp_path / "svd")


def test_corrupt_tn_folder_names_the_key(gpt2_lora, tmp_path):
    from safetensors.torch import load_file, save_file

    _, lora_dir = gpt2_lora
    from_lora(lora_dir, tmp_path / "svd", map=fast_map())
    tensors = load_file(tmp_path / "svd" / "adapter_model.safetensors")
    key = next(k for k in tensors if k.endswith("tn_s"))
    tensors[key] = torch.zeros(7)
    save_file(tensors, tmp_path / "svd" / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match=f"key '{key}' has shape"):
        to_lora(tmp_path / "svd", tmp_path / "back")
    del tensors[key]
    save_file(tensors, tmp_path / "svd" / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match=f"missing key '{key}'"):
        inspect_dir(tmp_path / "svd")
    (tmp_path / "svd" / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        to_lora(tmp_path / "svd", tmp_path / "back")
    with pytest.raises(CheckpointError, match="not 'LORA'"):
        from_lora(tmp_path / "svd", tmp_path / "back")


def test_pauli_is_a_reported_fit(gpt2_base, tmp_path):
    lora = make_lora(gpt2_base, tmp_path / "lora", r=2, lora_alpha=4, target_modules=["c_proj"],
                     fan_in_fan_out=True, layers_to_transform=[0])
    report = from_lora(tmp_path / "lora", tmp_path / "pauli", "pauli", layers=1, steps=20)
    assert not report.exact and len(report.layers) == 2
    for row in report.layers:
        assert 0 < row.relative_error <= 1.0 and row.reduction > 1
    # the reported error is the error of the model that loads
    tn = TnPeftModel.from_pretrained(copy.deepcopy(gpt2_base), tmp_path / "pauli")
    for row in report.layers:
        layer = dict(tn.tn_layers())[row.name]
        with torch.no_grad():
            dw = layer.delta_matrix("default").double()
            exact = lora.base_model.model.get_submodule(row.name).get_delta_weight("default").double().T
        assert abs(float(torch.linalg.norm(dw - exact) / torch.linalg.norm(exact)) - row.relative_error) < 1e-4
    with pytest.raises(CheckpointError, match="min-fidelity 0.99"):
        from_lora(tmp_path / "lora", tmp_path / "strict", "pauli", steps=5, min_fidelity=0.99)
    assert not (tmp_path / "strict").exists()


def test_tt_rank_cap_is_a_fit(gpt2_lora, tmp_path):
    _, lora_dir = gpt2_lora
    capped = from_lora(lora_dir, tmp_path / "tt2", "tt", rank=2)
    assert not capped.exact and capped.graph_args["rank"] == 2
    loose = from_lora(lora_dir, tmp_path / "tt_tol", "tt", tolerance=0.3)
    assert all(row.relative_error <= 0.3 + 1e-6 for row in loose.layers)


@pytest.mark.parametrize("argv, words", [
    (["--to", "svd", "--max-bond", "4"], "--max-bond does not apply to --to svd (only to --to tt / ttd)"),
    (["--to", "svd", "--rank", "4"], "--max-bond does not apply to --to svd"),  # the silent case
    (["--to", "pauli", "--tolerance", "0.1"], "--tolerance does not apply to --to pauli"),
    (["--to", "tt", "--depth", "2"], "--depth does not apply to --to tt (only to --to pauli)"),
    (["--to", "tt", "--map", "cayley"], "--map does not apply to --to tt"),
    (["--to", "svd", "--fit-steps", "5"], "--fit-steps does not apply to --to svd"),
    (["--to", "tt", "--center", "1"], "--center does not apply to --to tt (only to --to ttd)"),
])
def test_convert_refuses_options_its_form_would_ignore(argv, words, tmp_path, capsys):
    assert main(["convert", str(tmp_path / "no-lora"), "-o", str(tmp_path / "out"), *argv]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_from_lora_refuses_tt_options_for_other_forms(tmp_path):
    from tn_peft.errors import UsageError

    with pytest.raises(UsageError, match="to='svd'.* takes no rank"):
        from_lora(tmp_path / "no-lora", tmp_path / "out", "svd", rank=4)


def test_export_lora_takes_one_of_rank_and_energy(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export-lora", str(tmp_path), "-o", str(tmp_path / "o"), "--lora-rank", "2", "--energy", "0.9"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export-lora", str(tmp_path), "-o", str(tmp_path / "o"), "--energy", "1.5"])
    assert "fraction in (0, 1]" in capsys.readouterr().err
