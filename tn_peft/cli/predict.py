"""``tn-peft predict RUN``: label texts with a finished ``tn-peft finetune`` run, or export it as a plain model.

    tn-peft predict runs/finetune-X --text "a gorgeous film" "a tedious mess"
    tn-peft predict runs/finetune-X --data new.csv            # prints one label per row; accuracy if it has labels
    tn-peft predict runs/finetune-X --export-merged my-model  # a plain Hugging Face folder (no tn_peft needed)

The model is :func:`tn_peft.apps.finetune.predict.load_run`'s: the run's base model, adapter, head and
mean pooling; ``--method`` / ``--seed`` pick one of the run's saved models (default: its table's first
row at its first seed).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``tn-peft predict`` options to ``parser``."""
    parser.add_argument("run", metavar="RUN", help="a tn-peft finetune run folder, or one of its adapter-*-seed* folders")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", nargs="+", metavar="TEXT", help="texts to label")
    what.add_argument("--data", metavar="FILE", help="a CSV, TSV or JSON Lines file with a text column (and, "
                      "optionally, a label column: then the accuracy is printed)")
    what.add_argument("--export-merged", metavar="FOLDER", help="write the model as a plain Hugging Face folder "
                      "(adapter merged into the weights, head, labels) that transformers loads without tn_peft")
    parser.add_argument("--text-column", default=None, help="--data's text column (default: text)")
    parser.add_argument("--method", default=None, help="which saved model of the run: its method name as in the "
                        "run's table, or its folder's name without -seedN (default: the table's first row)")
    parser.add_argument("--seed", type=int, default=None, help="which seed's model (default: the run's first seed)")
    parser.add_argument("--model", default=None, help="the base model's local folder, when it is not where the "
                        "run's metrics.json says")
    parser.add_argument("--json", action="store_true", help="print one JSON object per text: text, label, probabilities")
    parser.add_argument("--overwrite", action="store_true", help="--export-merged: replace an existing folder")
    parser.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``tn-peft predict`` with parsed ``args``."""
    from ..apps.finetune.predict import export_merged, load_run, read_texts

    model = load_run(args.run, method=args.method, seed=args.seed, model=args.model, device=args.device)
    print(f"model: {model.method.get('name')} seed {model.seed} ({model.adapter_folder}); labels: "
          f"{', '.join(model.labels)}")
    if args.export_merged:
        out = export_merged(model, args.export_merged, overwrite=args.overwrite)
        print(f"exported to {out} (AutoModel + {out / 'classifier.safetensors'}; see its README.md)")
        return 0
    truth = None
    if args.data:
        texts, truth = read_texts(args.data, args.text_column)
    else:
        texts = list(args.text)
    probabilities = model.probabilities(texts)
    labels = [model.labels[i] for i in probabilities.argmax(-1).tolist()]
    for text, label, p in zip(texts, labels, probabilities.tolist()):
        if args.json:
            print(json.dumps({"text": text, "label": label, "probabilities": dict(zip(model.labels, p))}))
        else:
            print(f"{label}\t{max(p):.3f}\t{text}")
    if truth is not None:
        correct = sum(a == b for a, b in zip(labels, truth))
        print(f"accuracy: {correct}/{len(texts)} = {correct / max(len(texts), 1):.2%} (against the file's label column)")
    return 0
