"""Trainers through the peft front door: a plain transformers.Trainer writes adapter-only checkpoints and
resumes from them; TRL's SFTTrainer(model=..., peft_config=TnPeftConfig) trains a tiny Llama with its default
SFTConfig (gradient checkpointing on), saves only the adapter, which reloads; SFTTrainer also takes a model
from tn_peft.get_model; a 4-bit base through prepare_model_for_kbit_training trains."""

from __future__ import annotations

import os
import random

import pytest
import torch
from model_helpers import TARGETS, outputs, tiny_gpt2, tiny_llama

import tn_peft

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("accelerate")
from peft import PeftModel, get_peft_model  # noqa: E402

from tn_peft.model.peft_method import TnPeftConfig  # noqa: E402

ADAPTER_ONLY = {"adapter_config.json", "adapter_model.safetensors"}
FULL_MODEL = {"model.safetensors", "pytorch_model.bin"}


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=16, length=10):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 101, (4, length), generator=g).repeat(n // 4, 1)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _trainer(output_dir, max_steps=4):
    model = get_peft_model(tiny_gpt2(), TnPeftConfig(graph="quantum_peft", graph_args={"rank": 4},
                                                      target_modules=TARGETS["gpt2"], task_type="CAUSAL_LM"))
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=3e-2,
        lr_scheduler_type="constant", save_strategy="steps", save_steps=2, report_to=[], use_cpu=True,
        disable_tqdm=True, seed=0)
    return transformers.Trainer(model=model, args=args, train_dataset=_Tokens())


def _adapter(model):
    return {k: v.detach().clone() for k, v in peft.get_peft_model_state_dict(model).items()}


def test_plain_trainer_writes_adapter_checkpoints_and_resumes(tmp_path):
    straight = _trainer(tmp_path / "straight")
    straight.train()
    for step in (2, 4):
        files = set(os.listdir(tmp_path / "straight" / f"checkpoint-{step}"))
        assert ADAPTER_ONLY <= files and not files & FULL_MODEL, files
    resumed = _trainer(tmp_path / "straight")
    resumed.train(resume_from_checkpoint=str(tmp_path / "straight" / "checkpoint-2"))
    want, got = _adapter(straight.model), _adapter(resumed.model)
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=1e-5, msg=key)
    first = _trainer(tmp_path / "first", max_steps=1)
    assert any(not torch.equal(v, _adapter(first.model)[k]) for k, v in want.items()), "training moved the adapter"


# --------------------------------------------------------------------- TRL
WORDS = "the a cat dog sat ran on under mat log tree quickly slowly".split()


def _tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                                unk_token="<unk>")


def _texts(n=24):
    datasets = pytest.importorskip("datasets")
    rng = random.Random(0)
    return datasets.Dataset.from_dict({"text": [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(n)]})


def _sft_args(output_dir, **extra):
    trl = pytest.importorskip("trl")
    args = trl.SFTConfig(output_dir=str(output_dir), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
                         report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, **extra)
    assert args.gradient_checkpointing, "SFTConfig's default turns gradient checkpointing on"
    return trl, args


def test_sft_trainer_takes_a_tn_peft_config_and_saves_only_the_adapter(tmp_path):
    trl, args = _sft_args(tmp_path / "run")
    config = TnPeftConfig(graph="quantum_peft", graph_args={"rank": 4}, target_modules=["q_proj", "v_proj"])
    trainer = trl.SFTTrainer(model=tiny_llama(), args=args, train_dataset=_texts(), processing_class=_tokenizer(),
                             peft_config=config)
    assert isinstance(trainer.model, PeftModel)
    before = _adapter(trainer.model)
    trainer.train()
    after = _adapter(trainer.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    trainer.save_model(str(tmp_path / "final"))
    files = set(os.listdir(tmp_path / "final"))
    assert ADAPTER_ONLY <= files and not files & FULL_MODEL, files
    # (the trained model's own forward now runs under accelerate's bf16 autocast: compare tensors, not outputs)
    loaded = PeftModel.from_pretrained(tiny_llama(), tmp_path / "final")
    reloaded = _adapter(loaded)
    assert reloaded.keys() == after.keys() and all(torch.equal(reloaded[k], after[k]) for k in after)
    batch = {"input_ids": torch.randint(3, 16, (2, 6))}
    with loaded.disable_adapter():
        plain = outputs(loaded, batch)
    assert (outputs(loaded, batch) - plain).abs().max() > 0


def test_sft_trainer_takes_a_model_from_tn_peft_get_model(tmp_path):
    """TRL patches the model's forward with a fused LM head that reads ``self.base_model`` as transformers'
    backbone; tn_peft moves that patch onto the wrapped model (tn_peft.model.TnPeftModel.__setattr__)."""
    trl, args = _sft_args(tmp_path / "run")
    model = tn_peft.get_model(tiny_llama(), tn_peft.AdapterConfig(graph="quantum_peft", graph_args={"rank": 4},
                                                                  target_modules=["q_proj", "v_proj"]))
    before = {k: v.detach().clone() for k, v in model.adapter_state_dict().items()}
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=_texts(), processing_class=_tokenizer())
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    after = model.adapter_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    batch = {"input_ids": torch.randint(3, 16, (2, 6))}
    model.eval()
    assert outputs(model, batch).shape == (2, 6, 101)   # the plain forward (not the fused one) still works


def test_a_4bit_base_trains_through_prepare_model_for_kbit_training(tmp_path):
    """nf4 base (bitsandbytes on CPU), peft's prepare_model_for_kbit_training, TRL's SFTTrainer at its default
    learning rate. TRL casts the trainable parameters to bfloat16; the adapter is cast back to float32 at the
    first training step (tn_peft.model.peft_method._restore_adapter_dtype), so updates far below bfloat16's step
    (2**-7 near 1) still move the circuit."""
    pytest.importorskip("bitsandbytes")
    tiny_llama().save_pretrained(tmp_path / "base")
    quantization = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_compute_dtype=torch.float32)
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base", quantization_config=quantization,
                                                             device_map="cpu")
    base = peft.prepare_model_for_kbit_training(base)
    trl, args = _sft_args(tmp_path / "run")
    args.learning_rate = 2e-5
    config = TnPeftConfig(graph="quantum_peft", graph_args={"rank": 4}, target_modules=["q_proj", "v_proj"])
    trainer = trl.SFTTrainer(model=base, args=args, train_dataset=_texts(), processing_class=_tokenizer(),
                             peft_config=config)
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert {p.dtype for p in trainable.values()} == {torch.bfloat16}, "TRL's cast (what this test guards against)"
    before = {n: p.detach().float().clone() for n, p in trainable.items()}
    with pytest.warns(UserWarning, match="cast back"):
        trainer.train()
    assert {p.dtype for p in trainable.values()} == {torch.float32}
    steps = [(p.detach() - before[n]).abs().max().item() for n, p in trainable.items()]
    assert all(step > 0 for step in steps) and max(steps) < 2 ** -9, steps


def _free_port() -> int:
    """A TCP port nothing listens on now (a fixed port may be held by another run on the machine)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_ddp_under_torchrun_saves_the_adapter_of_one_process_on_the_global_batch(tmp_path):
    """``torchrun --nproc_per_node 2`` (gloo) of a plain Trainer: one adapter folder, equal to a one-process
    run on the global batch (the route by which accelerate, DeepSpeed and FSDP reach peft methods)."""
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    script = Path(__file__).parent / "peft_ddp_train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4"], capture_output=True, text=True,
                         timeout=600, env=env, check=False)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(_free_port()), str(script), str(tmp_path / "two"), "2"], capture_output=True, text=True,
                         timeout=600, env=env, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    want = load_file(tmp_path / "one" / "final" / "adapter_model.safetensors")
    got = load_file(tmp_path / "two" / "final" / "adapter_model.safetensors")
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=1e-5, msg=key)
    untrained = get_peft_model(tiny_gpt2(), TnPeftConfig(graph="quantum_peft", graph_args={"rank": 4},
                                                         target_modules=TARGETS["gpt2"], init_weights=False))
    start = _adapter(untrained)
    assert any(not torch.equal(start[k], want[k]) for k in want), "the runs trained the adapter"
