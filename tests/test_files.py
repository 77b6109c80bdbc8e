"""symgraph/files.py: every file symgraph writes replaces the old one whole or not at all."""

import os

import pytest

from symgraph.files import atomic_write, write_text


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    write_text(str(path), '{"ok": 1}')

    def half_then_fail(f):
        f.write(b'{"half": ')
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(str(path), half_then_fail)
    assert path.read_text() == '{"ok": 1}'
    assert os.listdir(tmp_path) == ["report.json"]
    write_text(str(tmp_path / "new" / "deep.txt"), "é")  # folders made, UTF-8
    assert (tmp_path / "new" / "deep.txt").read_text(encoding="utf-8") == "é"


def test_writing_onto_a_directory_names_the_path_and_leaves_no_temporary(tmp_path):
    from symgraph.errors import SymgraphError

    target = tmp_path / "weights.npz"
    target.mkdir()
    with pytest.raises(SymgraphError, match="weights.npz: it is a directory"):
        write_text(str(target), "x")
    assert os.listdir(tmp_path) == ["weights.npz"] and not os.listdir(target)
