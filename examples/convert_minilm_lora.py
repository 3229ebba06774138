"""Train a small LoRA on MiniLM with the real peft library, convert it to tn_peft's canonical SVD form,
and check that both give the same outputs; then export it back to LoRA and check peft loads it.

    HF_HUB_OFFLINE=1 python examples/convert_minilm_lora.py OUT_FOLDER [--steps 60] [--json FILE]

Writes OUT_FOLDER/lora (peft), OUT_FOLDER/svd (tn_peft), OUT_FOLDER/back (peft again). Then try:
``tn-peft inspect OUT_FOLDER/lora``, ``tn-peft inspect OUT_FOLDER/svd``. ``--json FILE`` also writes the two
differences (the README quotes ``docs/convert_minilm_lora.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", type=Path, default=None, help="also write the differences to this JSON file")
    args = parser.parse_args()
    import peft
    import transformers

    from tn_peft.convert import from_lora, to_lora
    from tn_peft.apps.finetune.data import load_rotten_tomatoes, model_path
    from tn_peft.model import TnPeftModel

    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    path = str(model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    data = load_rotten_tomatoes()
    order = torch.randperm(len(data))[: 16 * args.steps].tolist()
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], rank_pattern={"layer.5.attention.self.value": 4},
                             modules_to_save=["classifier"], task_type="SEQ_CLS")
    model = peft.get_peft_model(copy.deepcopy(base), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for step in range(args.steps):
        batch = order[16 * step: 16 * (step + 1)]
        enc = tokenizer([data.texts[i] for i in batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([data.labels[i] for i in batch])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"trained LoRA r=8 for {args.steps} steps, last loss {loss.item():.3f}")
    model.eval()
    model.save_pretrained(str(args.out / "lora"))

    report = from_lora(args.out / "lora", args.out / "svd", "svd", map="exp", base_model=base, force=True)
    print(report.format())
    to_lora(args.out / "svd", args.out / "back", force=True)
    enc = tokenizer(["a gorgeous, witty, seductive movie.", "the plot is nothing but boilerplate clichés"],
                    padding=True, return_tensors="pt")
    with torch.no_grad():
        lora_logits = model(**enc).logits
        tn_logits = TnPeftModel.from_pretrained(copy.deepcopy(base), args.out / "svd")(**enc).logits
        back = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(args.out / "back")).eval()
        back_logits = back(**enc).logits
    differences = {"tn_peft_svd_vs_lora": float((tn_logits - lora_logits).abs().max()),
                   "exported_back_vs_lora": float((back_logits - lora_logits).abs().max())}
    print(f"max |logits(tn_peft svd) - logits(LoRA)|      = {differences['tn_peft_svd_vs_lora']:.2e}")
    print(f"max |logits(LoRA exported back) - logits(LoRA)| = {differences['exported_back_vs_lora']:.2e}")
    if args.json is not None:
        record = {"command": "python examples/convert_minilm_lora.py " + " ".join(sys.argv[1:]), "steps": args.steps,
                  "torch_threads": torch.get_num_threads(), "max_abs_logit_difference": differences}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
