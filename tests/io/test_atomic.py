"""tn_peft.io.atomic: files and folders are written beside their target and renamed into place."""

from __future__ import annotations

import pytest

from tn_peft.io.atomic import atomic_write_folder, atomic_write_text, write_json


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("crash")

    from tn_peft.io.atomic import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "one" and sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]
    write_json(tmp_path / "b.json", {"x": tmp_path})
    assert str(tmp_path) in (tmp_path / "b.json").read_text()


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    atomic_write_folder(out, lambda tmp: (tmp / "f").write_text("one"))
    assert (out / "f").read_text() == "one"

    def fail(tmp):
        (tmp / "f").write_text("half")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write_folder(out, fail)
    assert (out / "f").read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["out"]
    atomic_write_folder(out, lambda tmp: (tmp / "g").write_text("two"))
    assert [p.name for p in out.iterdir()] == ["g"] and [p.name for p in tmp_path.iterdir()] == ["out"]
