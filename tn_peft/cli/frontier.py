"""``tn-peft frontier RUN [RUN ...]``'s options; the run is :func:`tn_peft.apps.finetune.frontier.run`."""

from __future__ import annotations

import argparse


def add_arguments(parser):
    """``tn-peft frontier RUN [RUN ...]``: one frontier from the runs of several finetune run folders."""
    parser.add_argument("runs", nargs="+", help="finetune run folders (or their metrics.json files), and saved "
                        "frontiers (frontier.json, or their folders) whose rows are added as they are")
    parser.add_argument("--out", required=True, help="folder for frontier.png, frontier.md and frontier.json")
    parser.add_argument("--title", default="", help="plot and table title")
    parser.add_argument("--max-budget", type=int, default=10_000,
                        help="largest budget of the tn_peft-vs-peft table (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..apps.finetune.frontier import run as run_frontier

    return run_frontier(args)
