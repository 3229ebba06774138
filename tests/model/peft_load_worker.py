"""Run in a fresh process: ``import tn_peft``, then load saved TN_PEFT adapters through peft's own API
(``PeftModel.from_pretrained``, ``AutoPeftModelForCausalLM``, ``AutoPeftModelForSequenceClassification``)
and write each one's outputs.

usage: python peft_load_worker.py JOBS_JSON THREADS
JOBS_JSON: a list of {"how": "peft_model" | "auto_causal" | "auto_seq_cls", "kind": "llama" | "gpt2" |
"minilm", "base_dir", "adapter", "batch", "out"}; THREADS: the parent's torch thread count (bit-equal outputs).
"""

import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(os.path.dirname(here), "helpers")]  # model_helpers and real_models

import torch
import transformers

import tn_peft  # noqa: F401 - registers TN_PEFT with peft (imported below)

from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification, PeftModel  # noqa: E402
from model_helpers import minilm, outputs  # noqa: E402

jobs_file, threads = sys.argv[1:3]
torch.set_num_threads(int(threads))
for job in json.load(open(jobs_file)):
    how = job["how"]
    if how == "auto_causal":
        model = AutoPeftModelForCausalLM.from_pretrained(job["adapter"])
    elif how == "auto_seq_cls":
        model = AutoPeftModelForSequenceClassification.from_pretrained(job["adapter"])
    else:
        load = transformers.AutoModelForCausalLM.from_pretrained
        base = minilm() if job["kind"] == "minilm" else load(job["base_dir"])
        model = PeftModel.from_pretrained(base, job["adapter"])
    model.eval()
    assert not any(p.requires_grad for p in model.parameters()), "loaded for inference: nothing trainable"
    torch.save(outputs(model, torch.load(job["batch"])), job["out"])
