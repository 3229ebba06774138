"""tn_peft through peft's own API (tn_peft.model.peft_method): every catalog graph on a tiny Llama, a tiny GPT-2
and the real MiniLM; fresh-process loading by PeftModel and AutoPeftModel*; the adapter API (add / set /
delete, disable, status, merge, mixed batches in forward and generate); the SEQ_CLS head; registration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_helpers import TARGETS, base_model, batch_for, outputs

import tn_peft

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
from peft import PeftModel, get_peft_model  # noqa: E402

from tn_peft.model.layers import TnLayer  # noqa: E402
from tn_peft.model.peft_method import TnPeftConfig  # noqa: E402

HERE = Path(__file__).parent
KINDS = ("llama", "gpt2", "minilm")


def _config(kind: str, graph: str = "quantum_peft", **extra) -> TnPeftConfig:
    return TnPeftConfig(graph=graph, target_modules=TARGETS[kind], **extra)


def _close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


def _matrix():
    """Every catalog graph on the tiny Llama; two (a circuit graph, a shared-node one) on GPT-2 and MiniLM
    in the default run, the rest of the cross product marked slow."""
    for kind in KINDS:
        for graph in tn_peft.catalog():
            fast = kind == "llama" or graph in ("quantum_peft", "lotr")
            yield pytest.param(kind, graph, marks=() if fast else pytest.mark.slow, id=f"{kind}-{graph}")


@pytest.mark.parametrize(("kind", "graph"), _matrix())
def test_every_catalog_graph_through_get_peft_model(kind, graph, tmp_path, capsys):
    batch = batch_for(base_model(kind))
    reference = outputs(base_model(kind), batch)
    identity = get_peft_model(base_model(kind), _config(kind, graph))
    _close(outputs(identity, batch), reference)
    model = get_peft_model(base_model(kind), _config(kind, graph, init_weights=False))
    model.print_trainable_parameters()
    trainable, total = model.get_nb_trainable_parameters()
    assert f"trainable params: {trainable:,d} || all params: {total:,d}" in capsys.readouterr().out
    adapted = outputs(model, batch)
    assert (adapted - reference).abs().max() > 1e-3, "init_weights=False must not start at the identity"
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved["peft_version"], saved["graph"]) == ("TN_PEFT", peft.__version__, graph)
    assert saved["graph_spec"] == tn_peft.load_graph(graph).to_spec()
    loaded = PeftModel.from_pretrained(base_model(kind), tmp_path)
    assert torch.equal(outputs(loaded, batch), adapted)
    model.merge_adapter()
    _close(outputs(model, batch), adapted)
    model.unmerge_adapter()
    _close(outputs(model, batch), adapted)
    plain = model.merge_and_unload()
    assert not any(isinstance(m, TnLayer) for m in plain.modules())
    _close(outputs(plain, batch), adapted)


def _save_base(kind: str, directory: Path):
    base_model(kind).save_pretrained(directory)
    return transformers.AutoModelForCausalLM.from_pretrained(directory).eval()


def _seq_cls_base(directory: Path):
    torch.manual_seed(3)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=101, num_labels=3, pad_token_id=0)
    transformers.LlamaForSequenceClassification(config).save_pretrained(directory)
    return transformers.LlamaForSequenceClassification.from_pretrained(directory).eval()


def test_a_fresh_process_loads_through_peft_model_and_the_auto_classes(tmp_path):
    """After ``import tn_peft`` in a new process: PeftModel.from_pretrained for every catalog graph (tiny Llama),
    GPT-2 and MiniLM; AutoPeftModelForCausalLM; AutoPeftModelForSequenceClassification with its head."""
    jobs, expected = [], {}

    def job(how, kind, model, base_dir, name, batch):
        model.eval()
        model.save_pretrained(tmp_path / name)
        torch.save(batch, tmp_path / f"{name}.batch")
        expected[name] = outputs(model, batch)
        jobs.append({"how": how, "kind": kind, "base_dir": str(base_dir), "adapter": str(tmp_path / name),
                     "batch": str(tmp_path / f"{name}.batch"), "out": str(tmp_path / f"{name}.out")})

    for kind, graphs in (("llama", tn_peft.catalog()), ("gpt2", ["quantum_peft"])):
        base_dir = tmp_path / f"{kind}-base"
        for graph in graphs:
            model = get_peft_model(_save_base(kind, base_dir), _config(kind, graph, init_weights=False,
                                                                      task_type="CAUSAL_LM"))
            how = "auto_causal" if graph == "quantum_peft" else "peft_model"
            job(how, kind, model, base_dir, f"{kind}-{graph}", batch_for(model))
    minilm = get_peft_model(base_model("minilm"), _config("minilm", init_weights=False))
    job("peft_model", "minilm", minilm, "", "minilm", batch_for(minilm))
    seq_config = _config("llama", init_weights=False, task_type="SEQ_CLS")
    seq = get_peft_model(_seq_cls_base(tmp_path / "cls-base"), seq_config)
    with torch.no_grad():
        seq.base_model.model.score.modules_to_save["default"].weight.normal_()  # the trained head, saved with it
    job("auto_seq_cls", "llama", seq, tmp_path / "cls-base", "seq-cls", batch_for(seq))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    run = subprocess.run([sys.executable, str(HERE / "peft_load_worker.py"), str(tmp_path / "jobs.json"),
                          str(torch.get_num_threads())], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    for name, want in expected.items():
        assert torch.equal(torch.load(tmp_path / f"{name}.out"), want), name


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_the_adapter_api_through_peft(kind):
    base = base_model(kind)
    batch = batch_for(base)
    reference = outputs(base, batch)
    model = get_peft_model(base, _config(kind, init_weights=False))
    first = outputs(model, batch)
    model.add_adapter("other", _config(kind, "lora", init_weights=False))
    assert model.active_adapters == ["default"]
    torch.testing.assert_close(outputs(model, batch), first)
    model.set_adapter("other")
    second = outputs(model, batch)
    assert (second - first).abs().max() > 1e-3
    status = model.get_model_status()
    assert status.active_adapters == ["other"] and status.available_adapters == ["default", "other"]
    assert status.requires_grad == {"default": False, "other": True} and status.peft_types["other"] == "TN_PEFT"
    layer = model.get_layer_status()[0]
    assert layer.module_type.startswith("PeftTn") and layer.enabled and layer.merged_adapters == []
    with model.disable_adapter():
        _close(outputs(model, batch), reference)
    _close(outputs(model, batch), second)
    # mixed batches: one adapter per row, in forward and in generate
    model.eval()
    double = {k: torch.cat([v, v]) for k, v in batch.items()}
    with torch.no_grad():
        mixed = model(**double, adapter_names=["other", "default", "__base__", "other"]).logits
    _close(mixed[0], second[0])
    _close(mixed[1], first[1])
    _close(mixed[2], reference[0])
    if kind == "llama":
        prompt = batch["input_ids"][:1].repeat(2, 1)
        gen = dict(max_new_tokens=3, do_sample=False, pad_token_id=0)
        together = model.generate(input_ids=prompt, adapter_names=["default", "other"], **gen)
        model.set_adapter("default")
        alone_default = model.generate(input_ids=prompt[:1], **gen)
        model.set_adapter("other")
        alone_other = model.generate(input_ids=prompt[:1], **gen)
        assert torch.equal(together[0], alone_default[0]) and torch.equal(together[1], alone_other[0])
    model.merge_adapter()
    assert model.get_model_status().merged_adapters == ["other"]
    model.unmerge_adapter()
    model.delete_adapter("default")
    assert list(model.peft_config) == ["other"] and model.active_adapters == ["other"]
    _close(outputs(model, batch), second)
    unloaded = model.unload()
    _close(outputs(unloaded, batch), reference)


def test_config_fields_follow_peft_conventions():
    config = TnPeftConfig(graph="lora", target_modules=r".*\.(q_proj|v_proj)", layer_graph_args={"q_proj": {"rank": 2}})
    assert config.peft_type == "TN_PEFT" and config.peft_type is peft.PeftType.TN_PEFT
    model = get_peft_model(base_model("llama"), config)
    assert sorted({n.rsplit(".", 1)[-1] for n in model.base_model.targeted_module_names}) == ["q_proj", "v_proj"]
    listed = TnPeftConfig(graph="lora", target_modules=["q_proj"], layers_to_transform=[1], layers_pattern="layers")
    model = get_peft_model(base_model("llama"), listed)
    assert model.base_model.targeted_module_names == ["model.layers.1.self_attn.q_proj"]
    defaulted = get_peft_model(base_model("llama"), TnPeftConfig(graph="lora"))  # peft's default targets for llama
    assert defaulted.peft_config["default"].target_modules == ["q_proj", "v_proj"]
    with pytest.raises(tn_peft.SpecError, match="dropout"):
        TnPeftConfig(graph="lora", target_modules=["q_proj"], dropout=2.0)
    with pytest.raises(tn_peft.SpecError, match="init_weights"):
        TnPeftConfig(graph="lora", target_modules=["q_proj"], init_weights="yes")


def test_peft_type_is_added_in_one_guarded_place(monkeypatch):
    from tn_peft.model import peft_method

    assert peft_method.add_peft_type() is peft.PeftType.TN_PEFT  # idempotent
    assert peft.PeftType("TN_PEFT") in list(peft.PeftType)
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    assert PEFT_TYPE_TO_TUNER_MAPPING["TN_PEFT"] is peft_method.TnPeftTuner
    err = peft_method._internals_moved(peft, "its PeftType enum cannot take a new member")
    assert "peft>=0.21.0,<0.22.0" in str(err) and "tn_peft.get_model" in str(err)


def test_import_tn_peft_registers_when_peft_comes_later_and_stays_cheap():
    code = ("import sys, tn_peft\n"
            "assert 'peft' not in sys.modules and 'torch' not in sys.modules\n"
            "from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING\n"
            "assert PEFT_TYPE_TO_CONFIG_MAPPING['TN_PEFT'].__name__ == 'TnPeftConfig'\n"
            "import peft; assert type(peft.__spec__.loader).__name__ == 'SourceFileLoader'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_peft_convert_to_lora_is_exact_at_the_adapter_rank(kind):
    """Quantum-PEFT's dW has rank k: peft's own convert_to_lora at rank k gives a LoRA adapter with the same
    outputs (the serving path for vLLM / TGI / SGLang / llama.cpp, which load LoRA only)."""
    from peft import convert_to_lora, set_peft_model_state_dict

    batch = batch_for(base_model(kind))
    model = get_peft_model(base_model(kind), TnPeftConfig(graph="quantum_peft", graph_args={"rank": 4},
                                                          target_modules=TARGETS[kind], init_weights=False))
    assert model.base_model.supports_lora_conversion()
    lora_config, state = convert_to_lora(model, rank=4)
    lora = get_peft_model(base_model(kind), lora_config)
    result = set_peft_model_state_dict(lora, state)
    assert not [k for k in result.unexpected_keys if "lora_" in k]
    _close(outputs(lora, batch), outputs(model, batch), atol=1e-4)


@pytest.mark.parametrize("kind", ["llama", "minilm"])
def test_the_two_front_doors_are_one_engine(kind):
    """get_peft_model(TnPeftConfig) and tn_peft.get_model(AdapterConfig), same seed: the same parameters in the
    same order, bit-equal outputs and gradients (why the main job's numbers stand through peft's door)."""
    fields = dict(graph="quantum_peft", graph_args={"layers": 3}, target_modules=TARGETS[kind])

    def run(door):
        base = base_model(kind)
        torch.manual_seed(0)
        model = (tn_peft.get_model(base, tn_peft.AdapterConfig(**fields)) if door == "engine"
                 else get_peft_model(base, TnPeftConfig(**fields)))
        batch = batch_for(base)
        out = model(**batch)
        (out.logits if kind == "llama" else out.last_hidden_state).pow(2).mean().backward()
        params = [p for p in model.parameters() if p.requires_grad]
        return [p.detach().clone() for p in params], [p.grad for p in params]

    (params_a, grads_a), (params_b, grads_b) = run("engine"), run("peft")
    assert len(params_a) == len(params_b) > 0
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
