"""Run in a fresh process: load a base model + a saved tn_peft adapter, write the outputs on a batch.

usage: python load_worker.py KIND BASE_DIR ADAPTER_DIR BATCH_FILE OUT_FILE THREADS
(KIND minilm loads the installed package; the tiny models load from BASE_DIR. THREADS: the parent's torch
thread count, so that the outputs are bit-equal whatever OMP_NUM_THREADS says.)
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(os.path.dirname(here), "helpers")]  # model_helpers and real_models

import torch
import transformers
from model_helpers import minilm, outputs

import tn_peft

kind, base_dir, adapter_dir, batch_file, out_file, threads = sys.argv[1:7]
torch.set_num_threads(int(threads))
if kind == "minilm":
    base = minilm()
else:
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir).eval()
model = tn_peft.TnPeftModel.from_pretrained(base, adapter_dir)
assert not any(p.requires_grad for p in model.parameters()), "is_trainable=False must freeze the adapter"
torch.save(outputs(model, torch.load(batch_file)), out_file)
