"""Fine-tune a causal LM with a plain ``transformers.Trainer`` and a tn_peft adapter, through peft.

    python examples/hf_trainer.py                              # a tiny Llama built from a config (offline)
    python examples/hf_trainer.py --model Qwen/Qwen2.5-0.5B --steps 200 -o runs/qwen

This is the LoRA script every peft user has, with one line changed (the README shows the diff): the
``peft_config`` is a ``TnPeftConfig`` instead of a ``LoraConfig``. Everything else -- ``get_peft_model``,
``print_trainable_parameters``, the Trainer's adapter-only checkpoints and ``resume_from_checkpoint``,
``save_pretrained``, ``PeftModel.from_pretrained`` -- is peft's.

Writes the adapter (adapter_config.json, adapter_model.safetensors) to ``-o/--output``.
"""

from __future__ import annotations

import argparse

import torch
import transformers
from peft import PeftModel, get_peft_model

from tn_peft import TnPeftConfig

TEXT = ("the cat sat on the mat . the dog ran under the log . a bird sang in the tree . "
        "the cat ran on the log . a dog sat under the tree . the bird sat on the mat . ") * 8


def base_model(name: str | None):
    """``--model`` from the Hub or a folder, or (None) a tiny Llama built from a config: nothing downloaded."""
    if name:
        return transformers.AutoModelForCausalLM.from_pretrained(name)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
    return transformers.LlamaForCausalLM(config)


class Bytes(torch.utils.data.Dataset):
    """Windows of a text as byte tokens (so the example needs no tokenizer download)."""

    def __init__(self, text: str, length: int = 32):
        ids = torch.tensor(list(text.encode()), dtype=torch.long)
        self.rows = ids[: len(ids) // length * length].view(-1, length)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a causal LM (Hub name or folder); default: a tiny Llama")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("-o", "--output", default="runs/hf-trainer")
    args = parser.parse_args(argv)

    model = base_model(args.model)
    peft_config = TnPeftConfig(graph="quantum_peft", target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_config)
    model.print_trainable_parameters()

    training = transformers.TrainingArguments(
        output_dir=args.output, max_steps=args.steps, per_device_train_batch_size=8, learning_rate=2e-2,
        save_steps=max(args.steps // 2, 1), logging_steps=max(args.steps // 4, 1), report_to=[],
        activation_checkpointing=True, use_cpu=not torch.cuda.is_available())
    trainer = transformers.Trainer(model=model, args=training, train_dataset=Bytes(TEXT))
    result = trainer.train()
    model.save_pretrained(args.output)

    reloaded = PeftModel.from_pretrained(base_model(args.model), args.output)  # what inference does
    print(f"trained {args.steps} steps, loss {result.training_loss:.3f}; adapter saved to {args.output}")
    return {"loss": result.training_loss, "model": model, "reloaded": reloaded}


if __name__ == "__main__":
    main()
