"""A plain transformers.Trainer on a get_peft_model(tiny GPT-2, TnPeftConfig) model: run by the test in one
process (batch 4) and under ``torchrun --nproc_per_node 2`` (gloo, batch 2 per rank), then compared.

usage: [torchrun --nproc_per_node 2] peft_ddp_train.py OUTPUT_DIR PER_DEVICE_BATCH
Sequential batches (no shuffling), SGD, no dropout: the global batch of each step is the same rows either way.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(os.path.dirname(here), "helpers")]  # model_helpers and real_models

import torch
import transformers
from model_helpers import TARGETS, tiny_gpt2
from peft import get_peft_model

from tn_peft.model.peft_method import TnPeftConfig


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=16, length=10):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 101, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class SequentialTrainer(transformers.Trainer):
    def _get_train_sampler(self, train_dataset=None):
        return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)


output_dir, per_device = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
model = get_peft_model(tiny_gpt2(), TnPeftConfig(graph="quantum_peft", graph_args={"rank": 4},
                                                 target_modules=TARGETS["gpt2"], init_weights=False))
args = transformers.TrainingArguments(
    output_dir=output_dir, max_steps=2, per_device_train_batch_size=per_device, learning_rate=0.1, optim="sgd",
    lr_scheduler_type="constant", save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
    ddp_backend="gloo" if "WORLD_SIZE" in os.environ else None)
trainer = SequentialTrainer(model=model, args=args, train_dataset=Tokens())
trainer.train()
trainer.save_model(os.path.join(output_dir, "final"))
