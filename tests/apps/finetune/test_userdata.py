"""The data-file contract of ``tn-peft finetune --data FILE``: each rule, accepted or one DataError line."""

from __future__ import annotations

import codecs
import json

import pytest

from tn_peft import DataError
from tn_peft.apps.finetune.data import TextDataset, load_dataset
from tn_peft.apps.finetune.userdata import (
    CONFLICT,
    EMPTY_TEXT,
    NO_LABEL,
    checked_split,
    format_summary,
    read_data_file,
    split_sizes,
    summarize,
)

ROWS = "text,label\n" + "".join(f"text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))


def _file(tmp_path, content, name="data.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _refused(path, match, **kwargs):
    with pytest.raises(DataError) as info:
        read_data_file(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "Fix:" in message, message
    assert match in message, message
    return message


# ---- files and encodings ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_utf8_utf8_bom_and_utf16_bom_read_the_same(tmp_path, encoding):
    text = 'text,label\n"café, très bon",pos\nnaïve plot,neg\nfine,pos\n'
    data, report = read_data_file(_file(tmp_path, text.encode(encoding)))
    assert data.texts == ["café, très bon", "naïve plot", "fine"] and data.label_names == ["neg", "pos"]
    assert report.encoding == {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16 LE"}[encoding]


def test_latin1_is_refused_at_its_byte_offset_and_line(tmp_path):
    path = _file(tmp_path, "text,label\nok,pos\ncaf\xe9,neg\n".encode("latin-1"))
    message = _refused(path, "byte 21 (line 3) is not UTF-8 (0xe9")
    assert "save the file as UTF-8" in message


def test_utf16_without_a_bom_and_binary_files_are_refused(tmp_path):
    _refused(_file(tmp_path, "text,label\nok,pos\n".encode("utf-16-le")), "byte 1 (line 1) is a NUL character")
    _refused(_file(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image.csv"), "byte 0 (line 1) is not UTF-8")
    _refused(_file(tmp_path, b"text,label\nok\x00,pos\n"), "byte 13 (line 2) is a NUL character")


def test_workbooks_archives_and_json_arrays_are_named(tmp_path):
    _refused(_file(tmp_path, b"PK\x03\x04\x14\x00rest", "data.xlsx"), "a ZIP archive (an Excel .xlsx workbook?)")
    _refused(_file(tmp_path, b"\x1f\x8b\x08\x00", "data.csv.gz"), "gzip-compressed")
    _refused(_file(tmp_path, '[{"text": "a", "label": 1}]', "data.json"), "a JSON array; the reader takes JSON Lines")


def test_missing_file_folder_empty_file_and_header_only(tmp_path):
    _refused(tmp_path / "nope.csv", "no such file")
    _refused(tmp_path, "is a folder, not a data file")
    _refused(_file(tmp_path, ""), "the file is empty")
    _refused(_file(tmp_path, "\n  \n"), "the file is empty")
    _refused(_file(tmp_path, "text,label\n"), "a header ('text', 'label') and no data rows")
    _refused(_file(tmp_path, "", "data.jsonl"), "the file is empty")


# ---- formats and columns ----------------------------------------------------------------------------------------

def test_tsv_by_extension_and_by_sniffing(tmp_path):
    content = "text\tlabel\nhas, a comma\tpos\nplain\tneg\n"
    for name in ("data.tsv", "data.txt"):
        data, report = read_data_file(_file(tmp_path, content, name))
        assert report.format == "TSV" and data.texts == ["has, a comma", "plain"]
    assert read_data_file(_file(tmp_path, "text,label\na,pos\nb,neg\n", "data.txt"))[1].format == "CSV"


def test_a_tsv_named_csv_gets_a_hint(tmp_path):
    _refused(_file(tmp_path, "text\tlabel\na\tpos\n"), "The header looks tab-separated: give the file the "
                                                     "extension .tsv")
    _refused(_file(tmp_path, "text;label\na;pos\n"), "The header holds ';'")
    _refused(_file(tmp_path, "text;label\na,b;pos\n"), "line 2: 2 fields where the header has 1 ('text;label'). "
                                                       "The header holds ';'")
    _refused(_file(tmp_path, "text,label\na,pos\n", "data.tsv"), "The header looks comma-separated")


def test_json_lines(tmp_path):
    lines = ['{"text": "good", "label": 1}', "", '{"text": "bad", "label": 0.0}', '{"text": "meh", "label": null}']
    data, report = read_data_file(_file(tmp_path, "\n".join(lines), "data.jsonl"))
    assert report.format == "JSON Lines" and data.label_names == ["0", "1"] and data.labels == [1, 0]
    assert report.dropped == {NO_LABEL: [4]}
    _refused(_file(tmp_path, '{"text": "a", "label": 1}\n[1, 2]\n', "d.jsonl"), "line 2: a JSON list, not an object")
    _refused(_file(tmp_path, '{"text": "a", "label": 1}\n{"text": \n', "d.jsonl"), "line 2: not JSON")
    _refused(_file(tmp_path, '{"text": ["a"], "label": 1}\n', "d.jsonl"), "'text' holds a list")
    extra = '{"text": "a", "label": 1, "meta": {"from": "x"}}\n{"text": "b", "label": true, "meta": [1]}\n'
    assert read_data_file(_file(tmp_path, extra, "d.jsonl"))[0].label_names == ["1", "true"]  # other columns: any
    _refused(_file(tmp_path, '{"text": ' + "[" * 100_000 + "\n", "d.jsonl"), "line 1: not JSON (nested too deeply)")
    sniffed = _file(tmp_path, '{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n', "d.txt")
    assert read_data_file(sniffed)[1].format == "JSON Lines"


def test_other_columns_by_name(tmp_path):
    path = _file(tmp_path, "id,review,stars\n1,great,5\n2,awful,1\n3,fine,5\n")
    _refused(path, "no column 'text' (columns: 'id', 'review', 'stars')")
    data, _ = read_data_file(path, text_column="review", label_column="stars")
    assert data.texts == ["great", "awful", "fine"] and data.label_names == ["1", "5"]
    _refused(path, "no column 'label'", text_column="review")
    _refused(path, "no column 'movie'", text_column="review", label_column="stars", group_column="movie")
    _refused(path, "must differ", text_column="review", label_column="review")
    _refused(_file(tmp_path, "text,label,text\na,b,c\n"), "names column 'text' 2 times")


def test_ragged_rows_and_bad_quoting(tmp_path):
    _refused(_file(tmp_path, "text,label\ngood, really,pos\nbad,neg\nugly,neg,,x\n"),
             "line 2: 3 fields where the header has 2 ('text', 'label') (and 1 more rows). Fix: quote texts")
    _refused(_file(tmp_path, "text,label\nonly\n"), "line 2: 1 fields")
    data, _ = read_data_file(_file(tmp_path, "text,label\na,pos,,\n\nb,neg\n   \n"))  # trailing empties, blank lines
    assert data.texts == ["a", "b"]
    _refused(_file(tmp_path, 'text,label\n"' + "x" * 200_000 + ",pos\n"), "an unclosed quote")


# ---- labels -----------------------------------------------------------------------------------------------------

def test_integer_and_integral_float_labels_are_one_class_each(tmp_path):
    data, _ = read_data_file(_file(tmp_path, "text,label\na,1\nb,1.0\nc,10\nd,2e0\ne,-1\n"))
    assert data.label_names == ["-1", "1", "2", "10"] and data.labels == [1, 1, 3, 2, 0]


def test_fractional_and_huge_number_labels_are_refused(tmp_path):
    _refused(_file(tmp_path, "text,label\na,1\nb,0.5\n"), "line 3: label '0.5' is not a whole number")
    _refused(_file(tmp_path, "text,label\na,1\nb,1e99999999\n"), "line 3: label '1e99999999' is too large")


def test_mixed_labels_are_strings(tmp_path):
    data, _ = read_data_file(_file(tmp_path, "text,label\na,1\nb,pos\nc, pos \n"))
    assert data.label_names == ["1", "pos"] and data.labels == [0, 1, 1]


def test_missing_labels_and_empty_texts_are_dropped_and_counted(tmp_path):
    content = "text,label\na,pos\n,neg\n   ,pos\nb,\nc,NaN\nd,n/a\ne,neg\n"
    data, report = read_data_file(_file(tmp_path, content))
    assert data.texts == ["a", "e"] and report.rows == 7
    assert report.dropped == {EMPTY_TEXT: [3, 4], NO_LABEL: [5, 6, 7]}


def test_a_file_without_labels_or_texts_is_refused_not_trained(tmp_path):
    # the issue's one-class classifier: an empty label column trained and reported an accuracy
    message = _refused(_file(tmp_path, "text,label\na,\nb,\nc,\n"), "no usable row of 3; dropped 3 with no label")
    assert "fill in the label column 'label'" in message
    _refused(_file(tmp_path, "text,label\n,a\n ,b\n"), "no usable row of 2; dropped 2 with empty text")


def test_one_class_is_refused(tmp_path):
    _refused(_file(tmp_path, "text,label\na,pos\nb,pos\nc,\n"), "one class ('pos', 2 rows) in column 'label'")


def test_duplicates_are_kept_and_conflicting_texts_dropped(tmp_path):
    content = "text,label\ngood,pos\ngood ,pos\nbad,neg\nso  so,pos\nso so,neg\nugly,neg\n"
    data, report = read_data_file(_file(tmp_path, content))
    assert data.texts == ["good", "good", "bad", "ugly"] and report.duplicates == 1
    assert report.dropped == {CONFLICT: [5, 6]}
    assert data.groups[0] == data.groups[1]  # copies of a text share a group, so one split


# ---- split ------------------------------------------------------------------------------------------------------

def test_default_sizes_and_what_too_small_means(tmp_path):
    data, _ = read_data_file(_file(tmp_path, ROWS))
    assert split_sizes(len(data)) == (None, 4, 4) and split_sizes(20, 10, None, 2) == (10, 4, 2)
    assert split_sizes(20, defaults=(8, 2, 3)) == (8, 2, 3)
    split = checked_split(data, split_sizes(len(data)), seed=0)
    assert split.sizes() == {"train": 12, "validation": 4, "test": 4}
    with pytest.raises(DataError, match="20 usable rows cannot give train 15 \\+ validation 4 \\+ test 4 = 23"):
        checked_split(data, (15, 4, 4))
    small, _ = read_data_file(_file(tmp_path, "text,label\na,pos\nb,neg\nc,pos\nd,neg\n"))
    with pytest.raises(DataError, match="the validation split would get 0 rows \\(--validation-size, or without it "
                                        "20 % of the 4 usable rows\\)"):
        checked_split(small, split_sizes(len(small)))
    with pytest.raises(DataError, match="the test split would get 0 rows"):
        checked_split(data, (12, 4, 0))
    with pytest.raises(DataError, match="the train split would get 0 rows"):
        checked_split(data, (None, 10, 10))
    assert checked_split(data, (12, 4, 0), test_needed=False).sizes()["test"] == 0  # --no-test


def test_every_class_needs_a_training_example():
    data = TextDataset("d", [f"t{i}" for i in range(10)], [0] * 9 + [1], [f"t{i}" for i in range(10)], ["a", "b"])
    outcomes = set()
    for seed in range(20):
        try:
            split = checked_split(data, (6, 2, 2), seed=seed)
        except DataError as err:
            assert "class 'b' (1 rows) has no example in the train split" in str(err)
            outcomes.add("refused")
        else:
            assert 1 in split.train.labels
            outcomes.add("split")
    assert outcomes == {"refused", "split"}


def test_groups_too_big_for_the_sizes():
    data = TextDataset("d", [f"t{i}" for i in range(10)], [i % 2 for i in range(10)], ["g"] * 8 + ["h", "k"],
                       ["a", "b"])
    with pytest.raises(DataError, match="the train split gets \\d rows of the 6 asked.*largest group has 8 rows"):
        for seed in range(10):
            checked_split(data, (6, 1, 1), seed=seed)


def test_a_group_column_keeps_groups_apart_and_a_shared_text_is_a_warning(tmp_path):
    body = "".join(f"review {i},{'pos' if i % 2 else 'neg'},film{i % 5}\n" for i in range(30))
    data, report = read_data_file(_file(tmp_path, "text,label,group\n" + body + "same text,pos,film0\n"
                                        "same text,pos,film1\n"))
    assert report.group_column == "group"
    found = False
    for seed in range(10):
        split = checked_split(data, (None, 5, 5), seed=seed)
        assert not set(split.train.groups) & set(split.test.groups)
        if "same text" in split.test.texts and "same text" in split.train.texts:
            with pytest.warns(UserWarning, match="1 texts of the test split are also in train"):
                summary = summarize(data, split, report)
            assert summary["texts_also_in_train"]["test"] == 1
            found = True
    assert found


def test_summary_counts_rows_classes_drops_and_splits(tmp_path):
    data, report = read_data_file(_file(tmp_path, ROWS + ",pos\nx,\nnumber 1  ,pos\n"))
    split = checked_split(data, (12, 4, 4))
    summary = summarize(data, split, report)
    assert summary["rows_read"] == 23 and summary["rows_used"] == 21 and summary["classes"] == {"neg": 10, "pos": 11}
    assert summary["dropped"] == {EMPTY_TEXT: 1, NO_LABEL: 1} and summary["grouped_by"] == "text"
    assert {p: v["rows"] for p, v in summary["split"].items()} == {"train": 12, "validation": 4, "test": 4}
    assert summary["texts_also_in_train"] == {"validation": 0, "test": 0}
    text = format_summary(summary)
    assert "(CSV, UTF-8): 23 rows, 21 used; 2 classes: neg 10, pos 11" in text
    assert "dropped: 1 with empty text (line 22); 1 with no label (line 23)" in text
    assert "split (grouped by text): train 12, validation 4, test 4" in text
    json.dumps(summary)  # it goes into metrics.json


def test_built_in_sets_refuse_column_options():
    with pytest.raises(DataError, match="--text-column name columns of a data file, not of the built-in"):
        load_dataset("rotten-tomatoes", text_column="x")


def test_the_bundled_example_file_meets_the_contract():
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "data" / "sample_reviews.csv"
    data, report = read_data_file(path)
    assert len(data) == 60 and report.dropped == {} and report.group_column == "group"
    assert checked_split(data, split_sizes(len(data))).sizes() == {"train": 36, "validation": 12, "test": 12}
    assert codecs.BOM_UTF8 not in path.read_bytes()


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("text,label\n", "no data rows"),
    ("text,label\n" + "".join(f"t{i},\n" for i in range(40)), "no usable row of 40; dropped 40 with no label"),
    ("text,label\n" + "".join(f",{i % 2}\n" for i in range(40)), "no usable row of 40; dropped 40 with empty text"),
    ("text,label\ncaf\xe9,pos\n".encode("latin-1"), "is not UTF-8"),
    (b"\x00\x01\x02binary", "is a NUL character"),
])
def test_the_issue_files_are_one_line_and_exit_2_on_the_command_line(tmp_path, capsys, content, message):
    from tn_peft.cli import main

    path = tmp_path / "mine.csv"
    if content is not None:
        _file(tmp_path, content, "mine.csv")
    assert main(["finetune", "--data", str(path), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"tn-peft: error: {path}") and message in err, err
    assert not (tmp_path / "run").exists()
