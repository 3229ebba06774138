"""One rank of the 2-process DDP test (gloo, CPU): load the shared start state, take one SGD step on
this rank's half of the global batch, save the gradients and the parameters after the step; rank 0
alone saves the adapter (save_pretrained must not wait for the other rank).

usage: python ddp_worker.py KIND RANK WORLD INIT_FILE STATE_FILE BATCH_FILE OUT_FILE
"""

import datetime
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(os.path.dirname(here), "helpers")]  # ddp_common; model_helpers and real_models

import torch
import torch.distributed as dist
from ddp_common import build_model, train_step
from torch.nn.parallel import DistributedDataParallel

kind, rank, world = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
init_file, state_file, batch_file, out_file = sys.argv[4:8]
torch.set_num_threads(1)
# a rank that fails leaves the other waiting: give up after 2 minutes, not gloo's default 30
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=120))
model = build_model(kind)
model.load_state_dict(torch.load(state_file))
ddp = DistributedDataParallel(model)
batch = torch.load(batch_file)
share = batch["input_ids"].shape[0] // world
local = {k: v[rank * share:(rank + 1) * share] for k, v in batch.items()}
grads, params = train_step(ddp, model, local)
torch.save({"grads": grads, "params": params}, out_file)
if rank == 0:  # DDP keeps whole tensors: rank 0 alone saves, with no collective to wait on
    model.save_pretrained(out_file + ".adapter")
dist.barrier()  # both ranks are done communicating before either tears gloo down
dist.destroy_process_group()
# gloo's threads can still be joinable when the interpreter's static destructors run ("terminate
# called without an active exception", about 1 run in 6 here): the result is saved, leave directly.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
