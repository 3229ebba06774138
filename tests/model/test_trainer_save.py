"""tn_peft.model.trainer.TnPeftTrainer: save_model and checkpoint-N hold adapter files (not the whole model),
load_best_model_at_end and resume_from_checkpoint load them back."""

from __future__ import annotations

import pytest
import torch
from model_helpers import TARGETS, batch_for, outputs, perturb, qpeft_config, tiny_gpt2

import tn_peft
from tn_peft import checkpoint as ckpt

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from tn_peft.model.trainer import TnPeftTrainer, load_adapters_in_place

ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"]


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=16, length=10):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 101, (4, length), generator=g).repeat(n // 4, 1)  # learnable in a few steps

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _model(seed=0, other=False):
    base = tiny_gpt2()
    torch.manual_seed(seed)
    model = tn_peft.get_model(base, qpeft_config(TARGETS["gpt2"]))
    if other:  # an inactive second adapter: saved in its subfolder, loaded back too
        model.add_adapter("other", tn_peft.AdapterConfig(graph="lora", graph_args={"rank": 2},
                                                         target_modules=["c_attn"]))
        perturb(model, "other", seed=seed + 10)
    return model


def _args(output_dir, **extra):
    return transformers.TrainingArguments(
        output_dir=str(output_dir), max_steps=4, per_device_train_batch_size=4, learning_rate=3e-2,
        lr_scheduler_type="constant", save_strategy="steps", save_steps=2, logging_steps=1, report_to=[],
        use_cpu=True, disable_tqdm=True, seed=0, **extra)


def _weights(model, name="default"):
    return {k: t.detach().clone() for k, t in model.adapter_state_dict(name).items()}


def _assert_weights(model, expected, name="default"):
    got = _weights(model, name)
    assert set(got) == set(expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5, msg=key)


def test_checkpoints_and_save_model_hold_adapter_files_and_the_best_one_comes_back(tmp_path):
    model = _model()
    args = _args(tmp_path / "run", eval_strategy="steps", eval_steps=2, load_best_model_at_end=True,
                 metric_for_best_model="loss", greater_is_better=True)  # the worst loss "wins": checkpoint-2
    trainer = TnPeftTrainer(model=model, args=args, train_dataset=_Tokens(), eval_dataset=_Tokens(n=8))
    assert trainer.label_names == ["labels"]  # from GPT2LMHeadModel, as Trainer does for a PeftModel
    before = _weights(model)
    trainer.train()
    eval_losses = [log["eval_loss"] for log in trainer.state.log_history if "eval_loss" in log]
    assert len(eval_losses) == 2 and eval_losses[0] > eval_losses[1], eval_losses
    for step in (2, 4):
        folder = tmp_path / "run" / f"checkpoint-{step}"
        files = sorted(p.name for p in folder.iterdir())
        assert all(name in files for name in ADAPTER_FILES), files
        assert not any(name.startswith(("model", "pytorch_model")) for name in files), files
    # load_best_model_at_end: the adapter is checkpoint-2's, not the last step's
    assert trainer.state.best_model_checkpoint == str(tmp_path / "run" / "checkpoint-2")
    _, best = ckpt.load_adapter_files(tmp_path / "run" / "checkpoint-2")
    _, last = ckpt.load_adapter_files(tmp_path / "run" / "checkpoint-4")
    _assert_weights(model, best)
    assert any(not torch.allclose(best[k], last[k]) for k in best)
    assert any(not torch.allclose(best[k], before[k]) for k in best)  # and it trained
    trainer.save_model(str(tmp_path / "final"))
    files = sorted(p.name for p in (tmp_path / "final").iterdir())
    assert files == sorted([*ADAPTER_FILES, "training_args.bin"]), files
    batch = batch_for(model, seed=1)
    model.eval()
    loaded = tn_peft.from_pretrained(tiny_gpt2(), tmp_path / "final")
    torch.testing.assert_close(outputs(loaded, batch), outputs(model, batch), atol=1e-6, rtol=1e-6)
    loaded = tn_peft.TnPeftModel.from_pretrained(tiny_gpt2(), tmp_path / "final", is_trainable=True)
    _assert_weights(loaded, best)


def test_resume_from_checkpoint_restores_every_adapter(tmp_path):
    model = _model(other=True)
    trainer = TnPeftTrainer(model=model, args=_args(tmp_path / "run"), train_dataset=_Tokens())
    trainer.train()
    assert (tmp_path / "run" / "checkpoint-2" / "other" / "adapter_model.safetensors").is_file()
    final, other = _weights(model), _weights(model, "other")
    _, at_two = ckpt.load_adapter_files(tmp_path / "run" / "checkpoint-2")
    # a fresh model with other initial adapters: resuming at step 2 loads checkpoint-2 and ends where run 1 did
    fresh = _model(seed=5, other=True)
    assert any(not torch.allclose(t, at_two[k]) for k, t in _weights(fresh).items())
    resumed = TnPeftTrainer(model=fresh, args=_args(tmp_path / "run2"), train_dataset=_Tokens())
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert resumed.state.global_step == 4
    _assert_weights(fresh, final)
    _assert_weights(fresh, other, "other")
    # in place: the optimizer still holds the model's own parameters
    held = {id(p) for group in resumed.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in fresh.parameters() if p.requires_grad} == held


def test_loading_a_checkpoint_without_the_models_adapters_is_refused(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    two = _model(other=True)
    with pytest.raises(tn_peft.CheckpointError, match="no files for adapter 'other'"):
        load_adapters_in_place(two, tmp_path)
    with pytest.raises(tn_peft.CheckpointError):
        load_adapters_in_place(_model(), tmp_path / "missing")


def test_loading_a_checkpoint_with_another_graph_is_refused(tmp_path):
    model = _model(other=True)
    model.save_pretrained(tmp_path)
    load_adapters_in_place(_model(other=True), tmp_path)  # the same graphs load
    # same keys and shapes, another scale (alpha): the saved graph spec differs
    changed = _model()
    changed.add_adapter("other", tn_peft.AdapterConfig(graph="lora", graph_args={"rank": 2}, alpha=7.0,
                                                       target_modules=["c_attn"]))
    with pytest.raises(tn_peft.CheckpointError, match="adapter 'other' was saved with another graph"):
        load_adapters_in_place(changed, tmp_path)
