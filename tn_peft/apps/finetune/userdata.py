"""Users' own data files (``tn-peft finetune --data FILE``): the file contract, its one reader, the split checks.

The contract (README, "Your own data"); anything outside it is one :class:`~tn_peft.errors.DataError` line
naming the file, the line or column, and the fix:

- **format** by extension: ``.csv`` comma-separated, ``.tsv`` / ``.tab`` tab-separated, ``.jsonl`` /
  ``.ndjson`` JSON Lines (one object per line, keys are the columns). Any other name is sniffed from the
  first line: JSON Lines if it starts with ``{``, TSV if it holds a tab, else CSV (a JSON array is refused).
  A field holding the delimiter, a quote or a line break is quoted; a field holds at most 131,072
  characters (csv's limit: more is usually an unclosed quote).
- **encoding**: UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark. Other bytes
  (Latin-1, a binary file) are refused at their byte offset, and so is a NUL character; a workbook,
  archive or PDF is refused by its name.
- **columns**: a header row; the text column ``text`` and the label column ``label`` unless
  ``--text-column`` / ``--label-column`` name others; ``--group-column`` (default: ``group`` when the file
  has one) keeps the rows of a group in one split. Every row has the header's number of fields (extra empty
  fields at a row's end are ignored); blank lines are skipped.
- **labels** name classes: strings (stripped); when every label is a number, integers and integral floats
  (``1``, ``1.0``, ``1e0`` are one class) and anything else (``0.5``) is refused: this is classification.
- **dropped and counted** (printed, and stored in metrics.json): rows whose text is empty or whitespace,
  rows without a label (empty, ``NaN``, ``NA``, ``N/A``, ``null``, ``None``), and every row of a text given
  two different labels. Duplicate texts are kept and counted; "the same text" is equal after collapsing
  whitespace.
- **split**: without a group column each distinct text is its own group, so copies of a text never land in
  two splits; with one, a test text also in train is a warning (its groups differ). There must be at least
  two classes, the asked sizes must fit the usable rows (by default 20 % validation, 20 % test, the rest
  train: at least 5 rows), the train and validation splits need a row (the test split too unless
  ``--no-test``) and every class a training example.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ...errors import DataError, warn
from .data import Split, TextDataset, group_split

#: file extension -> format; other names are sniffed (:func:`sniff_format`)
FORMATS = {".csv": "CSV", ".tsv": "TSV", ".tab": "TSV", ".jsonl": "JSON Lines", ".ndjson": "JSON Lines"}
DELIMITERS = {"CSV": ",", "TSV": "\t"}
#: label cells that mean "no label" (compared case-insensitively, after stripping)
MISSING_LABELS = frozenset({"", "nan", "na", "n/a", "null", "none"})
#: fractions of the usable rows for train / validation / test when no size is given
FRACTIONS = (0.6, 0.2, 0.2)
#: a numeric label with more digits than this is not a class name
MAX_LABEL_DIGITS = 18
#: reasons a row is dropped, in the order the summary lists them
EMPTY_TEXT, NO_LABEL, CONFLICT = "empty text", "no label", "text under two labels"
#: lines of each drop reason kept for the messages
SHOWN_LINES = 5

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BOMS = ((codecs.BOM_UTF8, "utf-8", "UTF-8 with BOM"), (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
         (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"))
_SAVE_AS_UTF8 = "Fix: save the file as UTF-8 text (a spreadsheet's 'CSV UTF-8'; or iconv -t UTF-8)"
#: leading bytes of files that are often passed for a CSV: what they are
_MAGIC = ((b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?)"), (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook"),
          (b"\x1f\x8b", "gzip-compressed (decompress it first)"), (b"%PDF", "a PDF document"))


@dataclass
class FileReport:
    """What reading a data file did: its format, encoding, rows read, rows dropped by reason (their line
    numbers), duplicate texts kept, and the column the split groups by (None: each text is its group)."""

    path: str
    format: str
    encoding: str
    rows: int
    dropped: dict[str, list[int]] = field(default_factory=dict)
    duplicates: int = 0
    group_column: str | None = None


def _where(line: int | None) -> str:
    return f", line {line}" if line else ""


def decode(path: Path, data: bytes) -> tuple[str, str]:
    """(text, encoding name) of a data file's bytes: UTF-8, or UTF-8 / UTF-16 after a byte-order mark.

    Refuses undecodable bytes and NUL characters at their byte offset and line.
    """
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DataError(f"{path}: {what}, not a text file. {_SAVE_AS_UTF8}")
    codec, name, skip = "utf-8", "UTF-8", 0
    for bom, bom_codec, bom_name in _BOMS:
        if data.startswith(bom):
            codec, name, skip = bom_codec, bom_name, len(bom)
            break
    body = data[skip:]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as err:
        offset = skip + err.start
        line = body[:err.start - err.start % 2 if codec != "utf-8" else err.start].decode(codec).count("\n") + 1
        raise DataError(f"{path}: byte {offset:,} (line {line}) is not {name} (0x{data[offset]:02x}: {err.reason}); "
                        f"a data file is UTF-8 or UTF-16 with a byte-order mark. {_SAVE_AS_UTF8}") from None
    nul = text.find("\x00")
    if nul >= 0:
        offset = skip + len(text[:nul].encode(codec))
        raise DataError(f"{path}: byte {offset:,} (line {text.count(chr(10), 0, nul) + 1}) is a NUL character: "
                        f"a binary file, or UTF-16 without a byte-order mark? {_SAVE_AS_UTF8}")
    return text, name


def sniff_format(path: Path, text: str) -> str:
    """The format of a file: by its extension (:data:`FORMATS`), else from its first non-blank line."""
    known = FORMATS.get(path.suffix.lower())
    if known:
        return known
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.lstrip().startswith("{"):
        return "JSON Lines"
    return "TSV" if "\t" in first else "CSV"


def _delimiter_hint(header: list[str], fmt: str) -> str:
    """A hint when a one-column header looks written with another delimiter than the file's format."""
    if len(header) != 1 or fmt == "JSON Lines":
        return ""
    if "\t" in header[0] and fmt != "TSV":
        return " The header looks tab-separated: give the file the extension .tsv."
    if "," in header[0] and fmt != "CSV":
        return " The header looks comma-separated: give the file the extension .csv."
    for other in ";|":
        if other in header[0]:
            return f" The header holds {other!r}: save the file with commas (.csv) or tabs (.tsv)."
    return ""


def _read_delimited(path: Path, text: str, fmt: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line, fields)]) of a CSV or TSV text; refuses a missing header, ragged rows and bad quoting."""
    delimiter = DELIMITERS[fmt]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows, ragged = [], []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # a blank line
            if header is None:
                header = [f.strip() for f in fields]
                continue
            while len(fields) > len(header) and not fields[-1].strip():
                fields = fields[:-1]  # extra empty fields at the end (spreadsheets write them)
            if len(fields) != len(header):
                ragged.append((reader.line_num, len(fields)))
            rows.append((reader.line_num, fields))
    except csv.Error as err:
        hint = ("an unclosed quote makes the rest of the file one field" if "field limit" in str(err)
                else "check the quoting there")
        raise DataError(f"{path}{_where(reader.line_num)}: cannot be read as {fmt} ({err}): {hint}. Fix: a field that "
                        "holds the delimiter, a quote or a line break is quoted, and its quotes are doubled "
                        '("say ""hi"", then go")') from None
    if header is None:
        raise DataError(f"{path}: the file is empty. Fix: write a header row (text,label) and one row per example")
    if ragged:
        line, count = ragged[0]
        more = f" (and {len(ragged) - 1} more rows)" if len(ragged) > 1 else ""
        name = "comma" if delimiter == "," else "tab"
        raise DataError(f"{path}, line {line}: {count} fields where the header has {len(header)} "
                        f"({', '.join(map(repr, header))}){more}.{_delimiter_hint(header, fmt)} Fix: quote texts "
                        f'that hold a {name} ("like{delimiter} this"), or give every row one field per column')
    return header, rows


def _cell(path: Path, line: int, key: str, value: Any) -> str:
    """A cell of a used column as text, stripped: a CSV field as it is; a JSON Lines value's strings as they
    are, numbers and booleans as text, null as empty (a nested value is refused)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    raise DataError(f"{path}, line {line}: {key!r} holds a {type(value).__name__}, not a string or number. "
                    f"Fix: make {key!r} a string on every line")


def _read_json_lines(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """(columns in order of first appearance, [(line, {column: value})]) of a JSON Lines text."""
    columns: dict[str, None] = {}
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as err:
            reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            raise DataError(f"{path}, line {number}: not JSON ({reason}). Fix: one JSON object per line, "
                            '{"text": "...", "label": "..."}') from None
        if not isinstance(value, dict):
            raise DataError(f"{path}, line {number}: a JSON {type(value).__name__}, not an object. Fix: one JSON "
                            'object per line, {"text": "...", "label": "..."}')
        columns.update(dict.fromkeys(value))
        rows.append((number, value))
    if not rows:
        raise DataError(f"{path}: the file is empty. Fix: write one JSON object per line, "
                        '{"text": "...", "label": "..."}')
    return list(columns), rows


def _column(path: Path, columns: list[str], name: str, option: str, fmt: str) -> str:
    if columns.count(name) > 1:
        raise DataError(f"{path}: the header names column {name!r} {columns.count(name)} times. "
                        f"Fix: rename all but one")
    if name in columns:
        return name
    listed = ", ".join(map(repr, columns)) or "none"
    raise DataError(f"{path}: no column {name!r} (columns: {listed}).{_delimiter_hint(columns, fmt)} Fix: name the "
                    f"column with {option}, or add a header row naming it")


def label_names(path: Path, labels: list[tuple[int, str]]) -> tuple[list[str], dict[str, str]]:
    """(class names in order, raw label -> class name) of ``(line, label)`` pairs.

    When every label is a number, integral ones name classes by their integer (sorted by value) and a
    fractional one is refused; otherwise labels are strings, sorted.
    """
    raws = dict.fromkeys(raw for _, raw in labels)
    if not raws or not all(_NUMBER.fullmatch(raw) for raw in raws):
        return sorted(raws), {raw: raw for raw in raws}
    lines = {raw: line for line, raw in reversed(labels)}
    name_of, values = {}, {}
    for raw in raws:
        try:
            number = Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
            number = Decimal("NaN")
        if number.is_finite() and number.adjusted() > MAX_LABEL_DIGITS:
            raise DataError(f"{path}, line {lines[raw]}: label {raw!r} is too large to name a class. "
                            f"Fix: use class names or small integers")
        if not number.is_finite() or number != number.to_integral_value():
            raise DataError(f"{path}, line {lines[raw]}: label {raw!r} is not a whole number; labels name "
                            "classes (strings, integers, or integral floats like 1.0), regression is not supported. "
                            "Fix: round or bin the values into classes")
        value = int(number)
        name_of[raw], values[str(value)] = str(value), value
    return sorted(values, key=values.__getitem__), name_of


def _key(text: str) -> str:
    """What "the same text" means: equal after collapsing whitespace."""
    return " ".join(text.split())


def _read_bytes(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise DataError(f"{path} is a folder, not a data file. Fix: pass the CSV, TSV or JSON Lines file inside it")
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (the current folder is {Path.cwd()}). Fix: check the path, or use a "
                        "built-in data set (rotten-tomatoes, bbc-news, debates-2016)") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err}). Fix: check the file's permissions") from None


def read_table(path: Path, text: str) -> tuple[str, list[str], list[tuple[int, dict[str, Any]]]]:
    """(format, columns, [(line, {column: value})]) of a decoded data file with at least one data row."""
    if not text.strip():
        raise DataError(f"{path}: the file is empty. Fix: write a header row (text,label) and one row per example")
    if text.lstrip().startswith("["):
        raise DataError(f"{path}: a JSON array; the reader takes JSON Lines, one object per line. Fix: write one "
                        "object per line (jq -c '.[]' FILE.json > FILE.jsonl)")
    fmt = sniff_format(path, text)
    if fmt == "JSON Lines":
        columns, cells = _read_json_lines(path, text)
    else:
        columns, records = _read_delimited(path, text, fmt)
        cells = [(line, dict(zip(columns, fields))) for line, fields in records]
    if not cells:
        raise DataError(f"{path}: a header ({', '.join(map(repr, columns))}) and no data rows. "
                        "Fix: add one row per example under the header")
    return fmt, columns, cells


def read_data_file(path: str | Path, *, text_column: str | None = None, label_column: str | None = None,
                   group_column: str | None = None) -> tuple[TextDataset, FileReport]:
    """Read a user's data file under the module's contract: the usable rows, and what reading did.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "mine.csv"
    >>> _ = f.write_text('text,label\\n"good, really",1.0\\nbad,0\\n,1\\nfine,1\\n')
    >>> data, report = read_data_file(f)
    >>> data.label_names, data.labels, report.dropped
    (['0', '1'], [1, 0, 1], {'empty text': [4]})
    """
    path = Path(path)
    text, encoding = decode(path, _read_bytes(path))
    fmt, columns, cells = read_table(path, text)
    text_col = _column(path, columns, text_column or "text", "--text-column", fmt)
    label_col = _column(path, columns, label_column or "label", "--label-column", fmt)
    group_col = None
    if group_column is not None or "group" in columns:
        group_col = _column(path, columns, group_column or "group", "--group-column", fmt)
    if len({text_col, label_col, group_col} - {None}) < 2 + (group_col is not None):
        raise DataError(f"{path}: the text, label and group columns must differ (got {text_col!r}, {label_col!r}, "
                        f"{group_col!r}). Fix: name different columns")
    report = FileReport(str(path), fmt, encoding, len(cells), group_column=group_col)
    kept: list[tuple[int, str, str, str]] = []  # line, text, label, group
    for line, row in cells:
        body = _cell(path, line, text_col, row.get(text_col))
        label = _cell(path, line, label_col, row.get(label_col))
        if not body:
            report.dropped.setdefault(EMPTY_TEXT, []).append(line)
        elif label.casefold() in MISSING_LABELS:
            report.dropped.setdefault(NO_LABEL, []).append(line)
        else:
            group = _cell(path, line, group_col, row.get(group_col)) if group_col else ""
            kept.append((line, body, label, f"group:{group}" if group else f"text:{_key(body)}"))
    names, name_of = label_names(path, [(line, label) for line, _, label, _ in kept])
    labels_of: dict[str, set[str]] = {}
    for _, body, label, _ in kept:
        labels_of.setdefault(_key(body), set()).add(name_of[label])
    conflicted = {k for k, v in labels_of.items() if len(v) > 1}
    if conflicted:
        report.dropped[CONFLICT] = [line for line, body, _, _ in kept if _key(body) in conflicted]
        kept = [row for row in kept if _key(row[1]) not in conflicted]
        left = {name_of[label] for _, _, label, _ in kept}
        names = [n for n in names if n in left]
    report.duplicates = len(kept) - len({_key(body) for _, body, _, _ in kept})
    check_classes(path, report, names, label_col, [name_of[label] for *_, label, _ in kept])
    index = {name: i for i, name in enumerate(names)}
    data = TextDataset(path.stem, [body for _, body, _, _ in kept], [index[name_of[lab]] for _, _, lab, _ in kept],
                       [group for *_, group in kept], names)
    return data, report


def describe_drops(dropped: dict[str, int], lines: dict[str, list[int]]) -> str:
    """``2 with no label (lines 4, 9); 1 with empty text (line 12)``: counts by reason, first lines of each."""
    return "; ".join(f"{n:,} with {reason} (line{'s' if n > 1 else ''} "
                     f"{', '.join(map(str, lines[reason][:SHOWN_LINES]))}{', ...' if n > SHOWN_LINES else ''})"
                     for reason, n in dropped.items())


def check_classes(path: Path, report: FileReport, names: list[str], label_column: str, labels: list[str]) -> None:
    """Refuse a file with no usable row or fewer than two classes (naming what was dropped and why)."""
    counts = {reason: len(lines) for reason, lines in report.dropped.items()}
    dropped = f"; dropped {describe_drops(counts, report.dropped)}" if counts else ""
    if not labels:
        fix = (f"fill in the label column {label_column!r}, or name the right one with --label-column"
               if NO_LABEL in report.dropped else "give every row a text and a label")
        raise DataError(f"{path}: no usable row of {report.rows}{dropped}. Fix: {fix}")
    if len(names) < 2:
        raise DataError(f"{path}: one class ({names[0]!r}, {len(labels)} rows) in column {label_column!r}{dropped}; "
                        "a classifier needs at least two. Fix: add rows of another class, or name the class column "
                        "with --label-column")


def split_sizes(total: int, train: int | None = None, validation: int | None = None, test: int | None = None,
                defaults: tuple[int, int, int] | None = None) -> tuple[int | None, int, int]:
    """The split sizes asked: each given size, else ``defaults``, else the validation and test
    :data:`FRACTIONS` of ``total`` rows (rounded down) and train None: every row the other two leave."""
    base = defaults or (None, *(int(total * f) for f in FRACTIONS[1:]))
    return tuple(given if given is not None else default for given, default in zip((train, validation, test), base))


def checked_split(data: TextDataset, sizes: tuple[int | None, int, int], *, seed: int = 0,
                  test_needed: bool = True, source: str | None = None) -> Split:
    """:func:`~tn_peft.apps.finetune.data.group_split` into the asked sizes (train None: every row left), refusing
    sizes the data cannot give: fewer usable rows than asked, a split that whole groups cannot fill, an empty
    train or validation split (or test, when ``test_needed``), a class without a training example."""
    where = source or data.name
    train, validation, test = sizes
    rest = len(data) - validation - test
    options = (("--train-size", rest if train is None else train, 1), ("--validation-size", validation, 1),
               ("--test-size", test, 1 if test_needed else 0))
    for option, size, least in options:
        if size < least:
            raise DataError(f"{where}: the {option[2:-5]} split would get {size} rows ({option}, or without it "
                            f"{'the rest' if option == '--train-size' else '20 %'} of the {len(data)} usable rows); it "
                            f"needs at least {least}. Fix: add rows, or set {option}")
    if train is not None and train > rest:
        raise DataError(f"{where}: {len(data)} usable rows cannot give train {train} + validation {validation} + test "
                        f"{test} = {train + validation + test}. Fix: lower --train-size, --validation-size or "
                        "--test-size, or add rows")
    split = group_split(data, train=len(data) if train is None else train, validation=validation, test=test, seed=seed)
    for part, asked in zip(("train", "validation", "test"), (train or 1, validation, test)):
        got = len(getattr(split, part))
        if got < asked:
            largest = max(Counter(data.groups).values())
            raise DataError(f"{where}: the {part} split gets {got} rows of the {asked} asked: whole groups fill the "
                            f"other splits first (the largest group has {largest} rows). Fix: lower the sizes, or "
                            "use smaller groups")
    in_train = Counter(split.train.labels)
    missing = [i for i in range(data.num_labels) if not in_train[i]]
    if missing:
        total = Counter(data.labels)
        name = data.label_names[missing[0]]
        raise DataError(f"{where}: class {name!r} ({total[missing[0]]} rows) has no example in the train split"
                        f"{f' (nor do {len(missing) - 1} more classes)' if len(missing) > 1 else ''}. Fix: add rows of "
                        "it, raise --train-size, or try another --split-seed")
    return split


def shared_texts(split: Split) -> dict[str, int]:
    """Texts (after collapsing whitespace) of the validation and test splits also found in train."""
    train = {_key(t) for t in split.train.texts}
    return {part: len({_key(t) for t in getattr(split, part).texts} & train) for part in ("validation", "test")}


def summarize(data: TextDataset, split: Split, report: FileReport | None = None) -> dict[str, Any]:
    """The data summary a run prints at its start and stores in metrics.json (``data.summary``)."""
    counts = Counter(data.labels)
    summary: dict[str, Any] = {
        "source": report.path if report else data.name,
        "rows_read": report.rows if report else len(data),
        "rows_used": len(data),
        "classes": {name: counts[i] for i, name in enumerate(data.label_names)},
        "dropped": {reason: len(lines) for reason, lines in (report.dropped if report else {}).items()},
        "split": {part: {"rows": len(getattr(split, part)),
                         "classes": dict(Counter(data.label_names[i] for i in getattr(split, part).labels))}
                  for part in ("train", "validation", "test")},
        "texts_also_in_train": shared_texts(split),
    }
    if report:
        summary.update(format=report.format, encoding=report.encoding, duplicate_texts=report.duplicates,
                       dropped_lines={reason: lines[:SHOWN_LINES] for reason, lines in report.dropped.items()},
                       grouped_by=f"column {report.group_column!r}" if report.group_column else "text")
    leaked = summary["texts_also_in_train"]["test"]
    if leaked:
        fix = ("Fix: give copies of a text one group, or split by text (no group column)" if report else
               "(the built-in data set holds these copies; its split is kept as published)")
        warn(f"{summary['source']}: {leaked} texts of the test split are also in train (the same text in different "
             f"groups): the test accuracy is optimistic. {fix}")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the lines a run prints."""
    classes = ", ".join(f"{name} {n:,}" for name, n in summary["classes"].items())
    if len(summary["classes"]) > 12:
        classes = ", ".join(f"{name} {n:,}" for name, n in list(summary["classes"].items())[:12]) + ", ..."
    head = f"data: {summary['source']}"
    if "format" in summary:
        head += f" ({summary['format']}, {summary['encoding']})"
    lines = [f"{head}: {summary['rows_read']:,} rows, {summary['rows_used']:,} used; "
             f"{len(summary['classes'])} classes: {classes}"]
    if summary["dropped"]:
        lines.append("  dropped: " + describe_drops(summary["dropped"], summary["dropped_lines"]))
    if summary.get("duplicate_texts"):
        lines.append(f"  duplicates: {summary['duplicate_texts']:,} rows repeat an earlier text (kept)")
    sizes = ", ".join(f"{part} {v['rows']:,}" for part, v in summary["split"].items())
    grouped = f" (grouped by {summary['grouped_by']})" if "grouped_by" in summary else ""
    lines.append(f"  split{grouped}: {sizes}")
    longer = summary.get("longer_than_max_length")
    if longer:
        lines.append(f"  {longer['texts']:,} of the {longer['of']:,} texts in the splits are longer than "
                     f"--seq-len {longer['max_length']} tokens (truncated)")
    for part, n in summary["texts_also_in_train"].items():
        if n:
            lines.append(f"  {'warning: ' if part == 'test' else ''}{n:,} texts of the {part} split are also in train")
    return "\n".join(lines)


def count_longer(texts: Sequence[str], tokenizer: Any, max_length: int) -> int:
    """How many ``texts`` have more than ``max_length`` tokens (special tokens included)."""
    if not texts:
        return 0
    ids = tokenizer(list(texts), truncation=True, max_length=max_length + 1)["input_ids"]
    return sum(len(i) > max_length for i in ids)
