# interleaved step times of the default pair, one process, 2 threads
import time, copy, torch
torch.set_num_threads(2)
from tn_peft.apps.finetune.data import *
from tn_peft.apps.finetune.methods import *
s = group_split(load_rotten_tomatoes(), train=3200, validation=800, test=2000, seed=0)
enc, tok = load_encoder(model_path())
tr = encode(s.train, tok, 64)
ms = [Method("qp", graph_args={"layers": 3}, lr=3e-2, lr_diag=1e-1, lr_head=3e-3),
      Method("lora", kind="peft", peft_type="lora", peft_args={"r": 4, "alpha": 8}, lr=3e-3, lr_head=3e-3)]
models = []
for m in ms:
    torch.manual_seed(0); c, _ = build_classifier(m, copy.deepcopy(enc), 2)
    models.append((m, c, torch.optim.AdamW(parameter_groups(c, m))))
g = torch.Generator().manual_seed(0)
times = {m.name: [] for m in ms}
for step in range(16):
    idx = torch.randperm(len(tr), generator=g)[:32]
    ids, mask, y = tr.batch(idx)
    for m, c, opt in models:
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(c(ids, mask), y); opt.zero_grad(); loss.backward(); opt.step()
        if step >= 2: times[m.name].append(time.perf_counter() - t)
for k, v in times.items():
    v = sorted(v); print(k, "median ms", round(1000 * v[len(v) // 2]), "min ms", round(1000 * v[0]))
