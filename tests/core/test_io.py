import os
import stat

import pytest

from iconograph.engine.files import RecordWriter, atomic_open, atomic_write_text


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    atomic_write_text(tmp_path / "out.json", "{}")
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "preds.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["preds.jsonl"]


RECORDS = [
    {"path": "b.jpg", "caption": "zeus, über alles", "error": None},
    {"path": "a.jpg", "caption": None, "error": "cannot decode image"},
]


def test_record_writer_jsonl_to_a_file_or_stdout_in_order(tmp_path, capsys):
    expected = '{"path": "b.jpg", "caption": "zeus, über alles", "error": null}\n'
    expected += '{"path": "a.jpg", "caption": null, "error": "cannot decode image"}\n'
    with RecordWriter(tmp_path / "out.jsonl") as writer:
        writer.write_all(RECORDS)
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == expected
    assert (writer.count, writer.failed) == (2, 1)
    with RecordWriter(None) as writer:
        writer.write_all(RECORDS)
    assert capsys.readouterr().out == expected


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_record_writer_tables_by_suffix(tmp_path, suffix, sep):
    path = tmp_path / f"out{suffix}"
    with RecordWriter(path, columns=("path", "caption", "error")) as writer:
        writer.write_all(RECORDS)
    quoted = '"zeus, über alles"' if sep == "," else "zeus, über alles"
    rows = [
        sep.join(("path", "caption", "error")),
        sep.join(("b.jpg", quoted, "")),
        sep.join(("a.jpg", "", "cannot decode image")),
    ]
    assert path.read_bytes().decode() == "".join(row + "\r\n" for row in rows)


def test_record_writer_leaves_no_file_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), RecordWriter(tmp_path / "out.jsonl") as writer:
        writer.write(RECORDS[0])
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
