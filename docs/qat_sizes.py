"""The adapter file sizes of the README's quantization table: the main job's Quantum-PEFT adapter (L = 3,
on query and value of all-MiniLM-L6-v2, 1,440 parameters) saved at each bit width as a finetune run saves
it (peft's ``save_pretrained`` through ``TnPeftConfig``), beside LoRA r4. Sizes do not depend on the
trained values, so untrained adapters are saved.

    python docs/qat_sizes.py                # writes docs/qat_sizes.json

payload = the tensors' bytes; file = ``adapter_model.safetensors`` on disk (its header of key names included).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sizes(model) -> dict[str, int]:
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        path = Path(folder) / "adapter_model.safetensors"
        tensors = load_file(str(path))
        return {"file_bytes": path.stat().st_size, "keys": len(tensors),
                "payload_bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
                "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def main() -> None:
    import peft
    import transformers

    from tn_peft import TnPeftConfig
    from tn_peft.apps.finetune.data import model_path

    base = transformers.AutoModel.from_pretrained(str(model_path()))
    targets = ["query", "value"]
    rows = {}
    for bits in (0, 8, 4, 2, 1):
        config = TnPeftConfig(graph="quantum_peft", target_modules=targets,
                              graph_args={"layers": 3, "angle_bits": bits, "diagonal_bits": bits})
        rows[str(bits or 32)] = sizes(peft.get_peft_model(copy.deepcopy(base), config))
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)
    rows["lora r4"] = sizes(peft.get_peft_model(copy.deepcopy(base), lora))
    out = Path(__file__).with_name("qat_sizes.json")
    out.write_text(json.dumps({"command": "python docs/qat_sizes.py", "targets": targets, "rows": rows}, indent=1) + "\n")
    json.dump(rows, sys.stdout, indent=1)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
