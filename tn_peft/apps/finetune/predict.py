"""A finished ``tn-peft finetune`` run, ready to use: load it, predict with it, export it as a plain model.

A run folder holds ``metrics.json`` (the base model's folder, the label names, ``max_length``, every
run's method and seed) and, per trained (method, seed), ``adapter-<method>-seed<N>/`` with the adapter
as its library saved it (peft's ``save_pretrained``; the head-only row has none) and the head
(``head.safetensors``). :func:`load_run` puts one of them back together as the model that was trained:

    logits = head(mean_pool(adapted_encoder(tokens)))   mean_pool(h) = sum_t mask_t h_t / sum_t mask_t

:func:`export_merged` writes it as a plain Hugging Face folder: the encoder with dW merged into its
weights (``AutoModel`` loads it, no tn_peft or peft needed), its tokenizer, the head
(``classifier.safetensors``) and the labels (``config.json``'s ``id2label``), with a README showing the
six lines that give the same logits.

``tn-peft predict RUN`` (:func:`run`; its options are :mod:`tn_peft.cli.predict`'s)::

    tn-peft predict runs/finetune-X --text "a gorgeous film" "a tedious mess"
    tn-peft predict runs/finetune-X --data new.csv            # one label per row; accuracy if it has labels
    tn-peft predict runs/finetune-X --export-merged -o my-model  # a plain Hugging Face folder (no tn_peft needed)
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, DataError, UsageError
from . import runfolder

#: the head's file in an adapter folder (written by the run, read here)
HEAD_FILE = runfolder.HEAD_FILE
#: the head's file in an exported folder
EXPORT_HEAD_FILE = "classifier.safetensors"
#: what an exported folder's config.json says it is (how its logits are computed)
EXPORT_RECIPE = "tn_peft finetune export: logits = classifier(mean_pool(AutoModel(tokens).last_hidden_state))"


@dataclass
class RunModel:
    """One trained (method, seed) of a run: ``classifier`` (encoder + adapter + head, mean pooling), its
    tokenizer, label names and ``max_length``; ``adapter_folder`` is where it was loaded from."""

    classifier: Any
    tokenizer: Any
    labels: list[str]
    max_length: int
    method: dict[str, Any]
    seed: int
    adapter_folder: Path
    base_model: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def logits(self, texts: list[str], batch_size: int = 64):
        """The classifier's logits for ``texts`` (tokenized as in training: truncated to ``max_length``)."""
        import torch

        device = next(self.classifier.parameters()).device
        self.classifier.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = self.tokenizer(list(texts[start:start + batch_size]), truncation=True,
                                     max_length=self.max_length, padding="longest", return_tensors="pt")
                out.append(self.classifier(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def predict(self, texts: list[str]) -> list[str]:
        """The predicted label name of each text."""
        return [self.labels[i] for i in self.logits(texts).argmax(-1).tolist()]

    def probabilities(self, texts: list[str]):
        """softmax(logits): one row per text, one column per label."""
        return self.logits(texts).softmax(-1)


def read_metrics(run: Path) -> dict[str, Any]:
    """``run/metrics.json``, or one CheckpointError saying why it cannot be used."""
    path = run / runfolder.METRICS
    if runfolder.is_incomplete(run):
        raise CheckpointError(f"{run} holds a run that did not finish ({runfolder.MARKER}). Fix: use a finished run "
                              "folder, or run tn-peft finetune again")
    if not path.is_file():
        raise CheckpointError(f"{run}: no {runfolder.METRICS}; not a tn-peft finetune run folder. Fix: pass the folder "
                              "tn-peft finetune wrote (its --out), or one of its adapter-*-seed* folders")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: cannot be read as JSON ({err}). Fix: run tn-peft finetune again") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("runs"), list) or not metrics["runs"]:
        raise CheckpointError(f"{path}: holds no runs. Fix: pass a finished tn-peft finetune run folder")
    return metrics


def choose_run(metrics: dict[str, Any], run: Path, method: str | None = None, seed: int | None = None,
               adapter_folder: str | None = None) -> dict[str, Any]:
    """The run entry to load: the one saved in ``adapter_folder``; else the one named ``method`` (its table
    name, its folder's name, or its family when the run has one setting of it) at ``seed`` (default: the
    run's first seed); else, with neither given, the table's first row at the first seed."""
    saved = [r for r in metrics["runs"] if isinstance(r, dict) and isinstance(r.get("saved_to"), str)
             and isinstance(r.get("method"), dict) and isinstance(r["method"].get("name"), str)]
    if not saved:
        raise CheckpointError(f"{run}: the run saved no models (it ran with --no-save). Fix: run tn-peft finetune "
                              "again without --no-save")
    if adapter_folder is not None:
        hits = [r for r in saved if Path(r["saved_to"]).name == adapter_folder]
    else:
        seeds = metrics.get("seeds") or [saved[0].get("seed")]
        want_seed = seeds[0] if seed is None else seed
        names = list(dict.fromkeys(r["method"]["name"] for r in saved))
        want = names[0] if method is None else method
        at_seed = [r for r in saved if r.get("seed") == want_seed]
        hits = [r for r in at_seed
                if r["method"]["name"] == want or Path(r["saved_to"]).name.removesuffix(f"-seed{want_seed}") == want]
        family = [r for r in at_seed if r["method"].get("family") == want]
        if not hits and len(family) == 1:  # --method lora when the run has one LoRA setting
            hits = family
        if not hits:
            choices = "; ".join(f"{r['method']['name']!r} seed {r.get('seed')}" for r in saved)
            raise UsageError(f"{run}: no saved run of method {want!r} at seed {want_seed}. Fix: choose one of: {choices}")
    if not hits:
        raise CheckpointError(f"{run}: {adapter_folder} is not one of the run's saved models. Fix: pass the run "
                              "folder, or one of the adapter-*-seed* folders metrics.json names")
    return hits[0]


def locate(path: str | Path) -> tuple[Path, str | None]:
    """(run folder, adapter folder name or None) of a run folder or one of its ``adapter-*`` folders."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such folder. Fix: pass a tn-peft finetune run folder (its --out)")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file. Fix: pass the run folder tn-peft finetune wrote")
    if not (path / runfolder.METRICS).is_file() and (path / HEAD_FILE).is_file():
        return path.parent, path.name
    return path, None


def _head(adapter: Path, hidden: int, num_labels: int):
    import torch
    from safetensors.torch import load_file

    path = adapter / HEAD_FILE
    if not path.is_file():
        raise CheckpointError(f"{adapter}: no {HEAD_FILE}. Fix: run tn-peft finetune again (every saved model has "
                              "its head)")
    head = torch.nn.Linear(hidden, num_labels)
    try:
        head.load_state_dict(load_file(str(path)))
    except Exception as err:  # noqa: BLE001 - safetensors and torch raise many types; one message names the file
        raise CheckpointError(f"{path}: not a {num_labels}-label head on {hidden} features ({err}). Fix: keep the "
                              "run folder as tn-peft finetune wrote it") from None
    return head


def _adapted(encoder: Any, method: dict[str, Any], adapter: Path) -> Any:
    """``encoder`` with the run's adapter loaded (the head-only row: ``encoder`` itself)."""
    if method.get("kind") == "head":
        return encoder
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise CheckpointError(f"{adapter}: no adapter_config.json for {method.get('name')!r}. Fix: keep the run "
                              "folder as tn-peft finetune wrote it")
    saved = json.loads(config.read_text(encoding="utf-8"))
    if "peft_type" not in saved:  # a tn_peft.get_model folder (runs from before the peft front door)
        from ...model import TnPeftModel

        return TnPeftModel.from_pretrained(encoder, adapter)
    import peft

    from ...model import peft_method  # noqa: F401 - registers PeftType.TN_PEFT for graph rows

    return peft.PeftModel.from_pretrained(encoder, str(adapter))


def load_run(path: str | Path, *, method: str | None = None, seed: int | None = None,
             model: str | Path | None = None, device: str = "cpu") -> RunModel:
    """A finetune run folder (or one of its ``adapter-*-seed*`` folders) as a ready model: the base model
    from ``metrics.json`` (or ``model``, a local folder), the run's adapter and head, mean pooling and
    the label names. ``method`` / ``seed`` choose among the run's saved models (default: the table's
    first row at the first seed)."""
    run, adapter_name = locate(path)  # the folder is checked before any model code loads
    metrics = read_metrics(run)
    entry = choose_run(metrics, run, method, seed, adapter_name)
    from .methods import Classifier, load_encoder, stay_offline

    stay_offline()
    adapter = run / Path(entry["saved_to"]).name  # the run folder may have moved since
    data = metrics.get("data") or {}
    labels = [str(x) for x in data.get("labels") or []]
    if len(labels) < 2:
        raise CheckpointError(f"{run / runfolder.METRICS}: names no labels. Fix: run tn-peft finetune again")
    base = Path(model) if model is not None else Path(str(metrics.get("model")))
    if not (base / "config.json").is_file():
        raise CheckpointError(f"{run}: its base model {base} is not a local model folder here. Fix: pass the "
                              "model's folder (model=..., --model)")
    encoder, tokenizer = load_encoder(base, metrics.get("quantize_base"), device)
    wrapped = _adapted(encoder, entry["method"], adapter)
    classifier = Classifier(wrapped, encoder.config.hidden_size, len(labels))
    classifier.head = _head(adapter, encoder.config.hidden_size, len(labels))
    classifier.to(device).eval()
    return RunModel(classifier, tokenizer, labels, int(data.get("max_length") or 64), entry["method"],
                    int(entry.get("seed", 0)), adapter, base, {"quantize_base": metrics.get("quantize_base")})


def merged_encoder(model: RunModel):
    """A copy of the run's encoder with its adapter merged into the weights: a plain transformers model."""
    if model.extra.get("quantize_base"):
        raise UsageError(f"{model.adapter_folder}: the run trained on a {model.extra['quantize_base']} base; merging "
                         "into quantized weights rounds dW away. Fix: export a run trained on a float base")
    wrapped = copy.deepcopy(model.classifier.encoder)
    if model.method.get("kind") == "head":
        return wrapped
    try:
        return wrapped.merge_and_unload()
    except (AttributeError, NotImplementedError, ValueError, TypeError) as err:
        raise UsageError(f"{model.method.get('name')!r} cannot be merged into the base weights ({err}). Fix: use "
                         "tn-peft predict, or load_run, on the run folder instead") from None


def export_merged(model: RunModel, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` as a plain Hugging Face folder ``out``: the merged encoder (``AutoModel``), its
    tokenizer, the head (:data:`EXPORT_HEAD_FILE`: ``weight``, ``bias``), ``id2label`` / ``label2id``
    in ``config.json``, and a README with the code that computes the logits without tn_peft."""
    import shutil
    import tempfile

    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists. Fix: choose another folder, or pass --overwrite to replace it")
    encoder = merged_encoder(model)
    encoder.config.id2label = dict(enumerate(model.labels))
    encoder.config.label2id = {name: i for i, name in enumerate(model.labels)}
    encoder.config.tn_peft_export = {"recipe": EXPORT_RECIPE, "pooling": "mean", "max_length": model.max_length,
                                     "head": EXPORT_HEAD_FILE, "method": model.method.get("name"), "seed": model.seed}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        encoder.save_pretrained(str(tmp))
        model.tokenizer.save_pretrained(str(tmp))
        head = {k: v.detach().cpu().contiguous() for k, v in model.classifier.head.state_dict().items()}
        save_file(head, str(tmp / EXPORT_HEAD_FILE))
        (tmp / "README.md").write_text(EXPORT_README.format(method=model.method.get("name"), seed=model.seed,
                                                            max_length=model.max_length), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


EXPORT_README = """# A tn-peft finetune model, merged ({method}, seed {seed})

Plain transformers: the adapter is merged into the encoder's weights; the head is `classifier.safetensors`.

```python
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

folder = "."  # this folder
encoder, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
head = load_file(f"{{folder}}/classifier.safetensors")
enc = tokenizer(["a text to classify"], truncation=True, max_length={max_length}, padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = encoder(**enc).last_hidden_state
mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
logits = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)) @ head["weight"].T + head["bias"]
print([encoder.config.id2label[i] for i in logits.argmax(-1).tolist()])
```
"""


def read_texts(path: str | Path, text_column: str | None = None) -> tuple[list[str], list[str] | None]:
    """(texts, labels or None) of a data file in the finetune formats (CSV, TSV, JSON Lines; README, "Your own
    data"): the ``text_column`` (default ``text``) and, when the file has one, the ``label`` column."""
    from . import userdata

    path = Path(path)
    text, _ = userdata.decode(path, userdata._read_bytes(path))
    _, columns, cells = userdata.read_table(path, text)
    column = text_column or "text"
    if column not in columns:
        raise DataError(f"{path}: no column {column!r} (columns: {', '.join(map(repr, columns))}). Fix: name the "
                        "text column with --text-column")
    rows = [(str(row.get(column) or ""), row.get("label")) for _, row in cells]
    texts = [t for t, _ in rows]
    labels = [str(lab) for _, lab in rows] if "label" in columns else None
    return texts, labels


# ----------------------------------------------------------------------- tn-peft predict
def run(args: argparse.Namespace) -> int:
    """Run ``tn-peft predict`` with parsed ``args``."""
    model = load_run(args.run, method=args.method, seed=args.seed, model=args.model, device=args.device)
    print(f"model: {model.method.get('name')} seed {model.seed} ({model.adapter_folder}); labels: "
          f"{', '.join(model.labels)}")
    if args.export_merged:
        out = export_merged(model, args.output, overwrite=args.overwrite)
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
