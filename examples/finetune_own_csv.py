"""Fine-tune all-MiniLM-L6-v2 on your own CSV of ``text,label`` rows with a custom graph adapter.

    python examples/finetune_own_csv.py                                  # the bundled 60-row sample
    python examples/finetune_own_csv.py --data my_data.csv --graph examples/pauli_left_dense_right.yaml \
        --set rank=8 --steps 300 --compare lora

The file (CSV, TSV or JSON Lines; README, "Your own data") needs a header row with ``text`` and
``label`` (``--text-column`` / ``--label-column`` name others; labels may be any strings or whole
numbers; an optional ``group`` column keeps rows of one group, e.g. one film or one author, in one
split). The rows are split 60/20/20 into train / validation / test by group; a data summary is
printed first. The run folder must be new (or pass ``--overwrite``). Pick steps and learning rates by the
validation accuracy (``--tune`` skips the test split), then run once without ``--tune`` for the test
number. Every option of ``tn-peft finetune`` works here (``--help``); this script only changes the
defaults: your CSV, the custom graph next to this file, and a small budget that suits a small file.

Writes a run folder (``--out``, default runs/own-csv) with metrics.json, curves.png and the adapter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: this script's defaults: the bundled 60-row sample, the custom graph next to this file, a small budget
DATA = HERE / "data" / "sample_reviews.csv"
GRAPH = HERE / "pauli_left_dense_right.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``tn-peft finetune``'s options with this script's defaults."""
    from tn_peft.cli.finetune import add_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(data=str(DATA), steps=30, batch_size=8, eval_every=10, seq_len=48, output="runs/own-csv")
    args = parser.parse_args(argv)
    if args.graph is None:  # --graph appends: a default list would keep this graph beside the user's
        args.graph = [str(GRAPH)]
    args.command_line = "python examples/finetune_own_csv.py " + " ".join(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> dict:
    from tn_peft.errors import TnPeftError
    from tn_peft.apps.finetune.run import run

    args = parse_args(argv)
    try:
        return run(args)
    except (TnPeftError, ValueError) as err:  # one line: what is wrong and how to fix it
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
