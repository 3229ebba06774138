"""One rank of the 2-process FSDP2 test (gloo, CPU): load the shared start state, shard the model with
tn_peft.model.distributed.shard (quantum_peft) or by hand as accelerate does (lotr), take SGD steps on this rank's half of the global batch, record the global
loss of each step, save the adapter from the sharded model (every rank calls save_pretrained).

usage: python fsdp_worker.py GRAPH RANK WORLD INIT_FILE STATE_FILE BATCH_FILE OUT_FILE SAVE_DIR
"""

import datetime
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(os.path.dirname(here), "helpers")]

import torch
import torch.distributed as dist
from fsdp_common import STEPS, build, sgd_steps

import tn_peft.model.distributed

graph, rank, world = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
init_file, state_file, batch_file, out_file, save_dir = sys.argv[4:9]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                        timeout=datetime.timedelta(seconds=120))
model = build(graph)
model.load_state_dict(torch.load(state_file))
if graph == "quantum_peft":
    tn_peft.model.distributed.shard(model)
else:  # fully_shard by hand, as accelerate's FSDP2 does: batch_nodes stays on, the model must notice the shards
    from torch.distributed.fsdp import fully_shard

    for block in model.base_model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    assert model.batch_nodes
batch = torch.load(batch_file)
share = batch["input_ids"].shape[0] // world
local = {k: v[rank * share:(rank + 1) * share] for k, v in batch.items()}
losses = sgd_steps(model, local, STEPS)
global_losses = torch.tensor(losses)
dist.all_reduce(global_losses)
params = {n: tn_peft.model.distributed.full_tensor(p.detach()).clone() for n, p in model.named_parameters() if p.requires_grad}
model.save_pretrained(save_dir)
if rank == 0:
    torch.save({"losses": (global_losses / world).tolist(), "params": params,
                "sharded": [n for n, p in model.named_parameters() if tn_peft.model.distributed.is_sharded(p)]}, out_file)
dist.barrier()
dist.destroy_process_group()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
