"""Supervised fine-tuning with TRL's ``SFTTrainer`` and a tn_peft adapter.

    python examples/trl_sft.py                                  # a tiny Llama built from a config (offline)
    python examples/trl_sft.py --model Qwen/Qwen2.5-0.5B --steps 200 -o runs/qwen-sft

TRL's LoRA recipe with one line changed (the README shows the diff): ``peft_config`` is a
``TnPeftConfig``. TRL's default ``SFTConfig`` is kept (gradient checkpointing on); the trainer saves the
adapter only, which ``PeftModel.from_pretrained`` reloads. Needs ``pip install trl datasets``.
"""

from __future__ import annotations

import argparse
import random

import torch
import transformers
from datasets import Dataset
from peft import PeftModel
from trl import SFTConfig, SFTTrainer

from tn_peft import TnPeftConfig

WORDS = "the a cat dog bird sat ran sang on under in mat log tree quickly slowly".split()


def model_and_tokenizer(name: str | None):
    """``--model`` and its tokenizer, or (None) a tiny Llama and a word-level tokenizer built here."""
    if name:
        return transformers.AutoModelForCausalLM.from_pretrained(name), transformers.AutoTokenizer.from_pretrained(name)
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", eos_token="<eos>",
                                                     unk_token="<unk>")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=len(vocab),
                                      pad_token_id=0, eos_token_id=1)
    return transformers.LlamaForCausalLM(config), tokenizer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a causal LM (Hub name or folder); default: a tiny Llama")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("-o", "--output", default="runs/trl-sft")
    args = parser.parse_args(argv)

    model, tokenizer = model_and_tokenizer(args.model)
    rng = random.Random(0)
    dataset = Dataset.from_dict({"text": [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(64)]})

    peft_config = TnPeftConfig(graph="quantum_peft", target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    training = SFTConfig(output_dir=args.output, max_steps=args.steps, per_device_train_batch_size=8,
                         report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available())
    trainer = SFTTrainer(model=model, args=training, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    result = trainer.train()
    trainer.save_model(args.output)

    reloaded = PeftModel.from_pretrained(model_and_tokenizer(args.model)[0], args.output)
    print(f"trained {args.steps} steps, loss {result.training_loss:.3f}; adapter saved to {args.output}")
    return {"loss": result.training_loss, "trainer": trainer, "reloaded": reloaded}


if __name__ == "__main__":
    main()
