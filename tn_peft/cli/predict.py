"""``tn-peft predict RUN``'s options; the run is :func:`tn_peft.apps.finetune.predict.run`."""

from __future__ import annotations

import argparse

from .vocabulary import add_device, add_output, add_overwrite, device_or_default


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``tn-peft predict RUN``: label texts with a finished finetune run, or export it as a plain model."""
    parser.add_argument("run", metavar="RUN", help="a tn-peft finetune run folder, or one of its adapter-*-seed* folders")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", nargs="+", metavar="TEXT", help="texts to label")
    what.add_argument("--data", metavar="FILE", help="a CSV, TSV or JSON Lines file with a text column (and, "
                      "optionally, a label column: then the accuracy is printed)")
    what.add_argument("--export-merged", action="store_true",
                      help="write the model to -o/--output as a plain Hugging Face folder (adapter merged into the "
                           "weights, head, labels) that transformers loads without tn_peft")
    add_output(parser, default=None, what="--export-merged: the folder to write", old=())
    add_overwrite(parser, what="--export-merged: replace an existing --output folder")
    parser.add_argument("--text-column", default=None, help="--data's text column (default: text)")
    parser.add_argument("--method", default=None, help="which saved model of the run: its method name as in the "
                        "run's table, or its folder's name without -seedN (default: the table's first row)")
    parser.add_argument("--seed", type=int, default=None, help="which seed's model (default: the run's first seed)")
    parser.add_argument("--model", default=None, help="the base model's local folder, when it is not where the "
                        "run's metrics.json says")
    parser.add_argument("--json", action="store_true", help="print one JSON object per text: text, label, probabilities")
    add_device(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..apps.finetune.predict import run as run_predict
    from ..errors import UsageError

    if args.export_merged and not args.output:
        raise UsageError("--export-merged needs the folder to write", fix="add -o FOLDER")
    if args.output and not args.export_merged:
        raise UsageError("-o/--output is the folder --export-merged writes", fix="add --export-merged, or drop -o")
    args.device = device_or_default(args.device)
    return run_predict(args)
