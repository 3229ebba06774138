"""Fuzzing users' data files (``tn-peft finetune --data FILE``): random and mutated CSV, TSV and JSON Lines
files, read, split and summarized as a run does before it loads a model (no training: fast).

A case draws a table (rows around the split thresholds, 1-6 classes, labels as strings, integers,
integral and fractional floats, NaN and empty; texts empty, duplicated, with delimiters, quotes, line
breaks, huge fields; an optional group column; a missing or renamed column), writes it in a random
format, delimiter, quoting and line ending, encodes it (UTF-8 with or without BOM, UTF-16 with or
without BOM, Latin-1, UTF-32) and sometimes mutates its bytes (NUL bytes, truncation, ...).

Accepted files are held to the contract's promises, a broken one raising AssertionError (a crash): every
row read is used or dropped for a reason, labels index the class names, no group is in two splits (and,
without a group column, no text), the split sizes are the asked ones, every class has a training example,
the summary is JSON; and a file written cleanly (csv quoting, a supported encoding, no mutation) is read
to its exact row count. A DataError must be one line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import warnings
from pathlib import Path

from .mutate import mutate_bytes
from .outcomes import Case

#: encodings a case is written in; the first three are the contract's
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "utf-32")
SUPPORTED = ENCODINGS[:3]
#: label kinds a table draws its labels from
LABEL_KINDS = ("words", "ints", "integral floats", "fractions", "mixed", "with missing", "one class", "unique")
WORDS = ("good", "bad", "fine", "great film", "awful, really", 'a "quoted" word', "line\nbreak", "tab\there",
         "semi;colon", "pipe|bar", "café", "日本語", "emoji 🎬", "  padded  ", "", " ", "NaN", "null")
#: what a case breaks: nothing (a valid file, still with empty texts, duplicates and odd quoting), or one fault
FAULTS = ("none",) * 5 + ("encoding", "bytes", "nul", "naive writing", "labels", "sizes", "columns", "huge field",
                         "tiny")


def _text(rng: random.Random, huge: bool) -> str:
    roll = rng.random()
    if roll < 0.03:
        return ""
    if roll < 0.05:
        return " \t "
    if huge and roll < 0.08:
        return "x" * rng.choice((1_000, 140_000, 300_000))  # past csv's field limit
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) + f" {rng.randrange(1000)}"


def _labels(rng: random.Random, n: int, odd: bool) -> list[object]:
    kind = rng.choice(LABEL_KINDS if odd else LABEL_KINDS[:3])
    k = rng.randint(2, 6)
    if kind == "words":
        pool: list[object] = ["pos", "neg", "neutral", "Pos ", "other class", "é"][:k]
    elif kind == "ints":
        pool = [0, 1, 2, -1, 10, 7][:k]
    elif kind == "integral floats":
        pool = [0.0, 1.0, "2.00", "1e0", 3, "-0.0"][:k]
    elif kind == "fractions":
        pool = [0.5, 1, 2.25, "1e-3"][:k]
    elif kind == "mixed":
        pool = [1, "one", 2.0, "2", True][:k]
    elif kind == "with missing":
        pool = ["a", "b", "", "NaN", None, "n/a"][:k]
    elif kind == "one class":
        pool = ["only"]
    else:
        return [f"id{i}" for i in range(n)]
    return [rng.choice(pool) for _ in range(n)]


def _table(rng: random.Random, fault: str) -> tuple[list[str], list[list[object]]]:
    """A header and rows: text, label, maybe group and an extra column, in a random order; with the fault
    "columns" a column renamed or missing."""
    sizes = (0, 1, 2, 3, 4, 5, 6, 7, 9) if fault == "tiny" else (10, 12, 20, 33, 60, 150, 400)
    n = rng.choice(sizes)
    texts = [_text(rng, fault == "huge field") for _ in range(n)]
    for i in range(n):
        if i and rng.random() < 0.05:
            texts[i] = texts[rng.randrange(i)]  # duplicates, sometimes under another label
    columns = {"text": texts, "label": _labels(rng, n, fault == "labels")}
    if rng.random() < 0.4:
        columns["group"] = [rng.choice(("g1", "g2", "g3", "", f"g{i}", f"g{i // 3}")) for i in range(n)]
    if rng.random() < 0.3:
        columns["id"] = list(range(n))
    names = list(columns)
    rng.shuffle(names)
    header = list(names)
    if fault == "columns":
        if rng.random() < 0.5:
            del names[rng.randrange(len(names))]
            header = list(names)
        else:
            header[rng.randrange(len(header))] = rng.choice(("Text", " label ", "", "text", "label", "group"))
    return header, [[columns[name][i] for name in names] for i in range(n)]


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _write(rng: random.Random, header: list[str], rows: list[list[object]], naive: bool) -> tuple[str, str, bool]:
    """(text, file suffix, written cleanly: parseable back to exactly these rows)."""
    fmt = rng.choice(("csv", "csv", "tsv", "jsonl", "other"))
    if fmt == "jsonl" and not naive:
        meta = {"meta": {"source": [1, None]}} if rng.random() < 0.2 else {}  # a nested column nobody reads
        lines = [json.dumps({**dict(zip(header, row)), **meta}, ensure_ascii=rng.random() < 0.5) for row in rows]
        return "\n".join(lines) + rng.choice(("\n", "", "\n\n")), ".jsonl", True
    delimiter = {"csv": ",", "tsv": "\t"}.get(fmt) or rng.choice((",", "\t", ";", "|"))
    terminator = rng.choice(("\n", "\r\n", "\r"))
    suffix = {"csv": ".csv", "tsv": ".tsv"}.get(fmt, ".txt")
    if naive:  # no quoting at all: ragged rows, broken lines
        return terminator.join(delimiter.join(map(_cell, line)) for line in [header, *rows]) + terminator, suffix, False
    out = io.StringIO()
    quoting = rng.choice((csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC))
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=terminator)
    writer.writerow(header)
    writer.writerows([[_cell(v) for v in row] for row in rows])
    clean = (fmt != "other" or delimiter in ",\t") and terminator != "\r" and not any(
        len(_cell(v)) > 100_000 for row in rows for v in row)
    return out.getvalue(), suffix, clean


def _expected_rows(rows: list[list[object]]) -> int:
    """Rows a clean CSV or TSV file holds: those with any non-blank field (a blank row is a blank line)."""
    return sum(any(_cell(v).strip() for v in row) for row in rows)


def _exercise(path: Path, columns: dict[str, str | None], sizes: tuple, expect_rows: int | None) -> None:
    from ...errors import DataError
    from ..finetune.userdata import checked_split, format_summary, read_data_file, split_sizes, summarize

    try:
        data, report = read_data_file(path, **columns)
        asked = split_sizes(len(data), *sizes)
        split = checked_split(data, asked, seed=len(data))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a test text also in train: a warning, checked by the tests
            summary = summarize(data, split, report)
    except DataError as err:
        if "\n" in str(err):
            raise AssertionError(f"a DataError of several lines: {err!r}") from err
        raise
    assert expect_rows is None or report.rows == expect_rows, (report.rows, expect_rows)
    assert len(data) + sum(len(lines) for lines in report.dropped.values()) == report.rows
    assert all(0 <= label < data.num_labels for label in data.labels) and data.num_labels >= 2
    assert all(text.strip() for text in data.texts)
    parts = (split.train, split.validation, split.test)
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(parts[a].groups) & set(parts[b].groups), "a group in two splits"
    train, validation, test = asked
    assert (train is None or len(split.train) == train) and len(split.validation) == validation
    assert len(split.test) == test and set(split.train.labels) == set(range(data.num_labels))
    if report.group_column is None:  # split by text: copies of a text never straddle splits
        assert not any(summary["texts_also_in_train"].values()), summary["texts_also_in_train"]
    json.dumps(summary)
    format_summary(summary)


def make(workdir: str | Path):
    """The data surface: case i -> a data file in ``workdir`` and the call that reads, splits and summarizes it."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def case(i: int) -> Case:
        rng = random.Random(i)
        fault = rng.choice(FAULTS)
        header, rows = _table(rng, fault)
        text, suffix, clean = _write(rng, header, rows, fault == "naive writing")
        encoding = rng.choice(ENCODINGS[3:] if fault == "encoding" else SUPPORTED)
        data = text.encode(encoding, "replace")
        if fault == "bytes":
            data = mutate_bytes(data, rng)
        elif fault == "nul":
            at = rng.randrange(len(data) + 1)
            data = data[:at] + b"\x00" * rng.randint(1, 3) + data[at:]
        columns = {"text_column": None, "label_column": None, "group_column": None}
        if fault == "columns" and rng.random() < 0.3:
            columns[rng.choice(list(columns))] = rng.choice(("text", "label", "group", "id", "missing"))
        choices = (None, 0, 1, 2, 5, 12, 40, 1000, -1) if fault == "sizes" else (None,)
        sizes = tuple(rng.choice(choices) for _ in range(3))
        expect = None
        if clean and fault in ("none", "sizes", "tiny", "labels") and any(h.strip() for h in header):
            expect = len(rows) if suffix == ".jsonl" else _expected_rows(rows)
        path = workdir / f"case{suffix}"
        path.write_bytes(data)
        label = f"{fault}: {len(rows)} rows, {suffix[1:]} in {encoding}, columns {header}, sizes {sizes}"
        return Case(label, data, lambda: _exercise(path, columns, sizes, expect), suffix)

    def warm_up() -> None:
        """Read a valid file in each format and encoding, and a refused one, before the watched cases."""
        from ...errors import DataError

        rows = [(f"text {i}", ("pos", "neg")[i % 2]) for i in range(20)]
        texts = {".csv": "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows),
                 ".tsv": "text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows),
                 ".jsonl": "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows)}
        for suffix, text in texts.items():
            for encoding in (*SUPPORTED, "latin-1"):
                path = workdir / f"warm-up{suffix}"
                path.write_bytes(text.encode(encoding) + (b"\xff" if encoding == "latin-1" else b""))
                with contextlib.suppress(DataError):
                    _exercise(path, {}, (None, None, None), None)

    case.warm_up = warm_up
    return case
