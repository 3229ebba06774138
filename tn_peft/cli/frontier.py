"""``tn-peft frontier RUN [RUN ...]``'s options; the run is :func:`tn_peft.apps.finetune.frontier.run`."""

from __future__ import annotations

import argparse

from .vocabulary import add_option, add_output


def add_arguments(parser):
    """``tn-peft frontier RUN [RUN ...]``: one frontier from the runs of several finetune run folders."""
    parser.add_argument("runs", nargs="+", help="finetune run folders (or their metrics.json files), and saved "
                        "frontiers (frontier.json, or their folders) whose rows are added as they are")
    add_output(parser, default=None, required=True, what="folder for frontier.png, frontier.md and frontier.json")
    parser.add_argument("--title", default="", help="plot and table title")
    add_option(parser, "--max-params", old=("--max-budget",), type=int, default=10_000, metavar="N",
               help="largest adapter size (parameters) in the tn_peft-vs-peft budget table (default: %(default)s)")
    parser.add_argument("--overlay", action="store_true",
                        help="draw runs of different settings (model, data set, split, steps) as separate series, "
                             "each with its own frontier; without it such runs are refused")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..apps.finetune.frontier import run as run_frontier

    return run_frontier(args)
