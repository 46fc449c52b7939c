"""Atomic writes (issue 20, case 1 in part): a unique temporary file per write, removed when writing
fails, never left behind; the target is whole or as it was."""

import multiprocessing
import os
import stat

import pytest

from selectit.atomic import atomic_dir, atomic_open, atomic_write


def test_a_failed_write_leaves_the_target_as_it_was_and_no_temporary_file(tmp_path):
    target = tmp_path / "scores.jsonl"
    target.write_text("old\n")

    def boom(f):
        f.write("half a file")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, boom)
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["scores.jsonl"]


def test_a_target_that_is_a_folder_leaves_no_temporary_file(tmp_path):
    (tmp_path / "report").mkdir()
    with pytest.raises(OSError):
        atomic_write(tmp_path / "report", lambda f: f.write("x" * 100_000))
    assert os.listdir(tmp_path) == ["report"] and not os.listdir(tmp_path / "report")


def test_two_writers_of_one_path_get_their_own_temporary_files(tmp_path):
    target = tmp_path / "scores.jsonl"
    with atomic_open(target) as a, atomic_open(target) as b:
        assert a.name != b.name and len(os.listdir(tmp_path)) == 2
        a.write("from a\n")
        b.write("from b\n")
    assert target.read_text() == "from a\n"  # the last to finish wins, whole
    assert os.listdir(tmp_path) == ["scores.jsonl"]


def _write_many(path, tag):
    for i in range(200):
        text = f"{tag} {i}\n" * 500
        atomic_write(path, lambda f, text=text: f.write(text))


def test_two_processes_writing_one_path_never_mix_or_leave_files(tmp_path):
    """What two runs into one --out did to scores.jsonl.tmp: a crash, or a garbled last line."""
    target = tmp_path / "scores.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(target, tag)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = target.read_text().splitlines()
    assert len(lines) == 500 and len(set(lines)) == 1  # one writer's whole file
    assert os.listdir(tmp_path) == ["scores.jsonl"]


def test_written_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "config.json", lambda f: f.write("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    target = tmp_path / "selected"
    target.mkdir()
    (target / "old.arrow").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "new.arrow").write_text("new")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["selected"] and os.listdir(target) == ["old.arrow"]
    with atomic_dir(target) as d:
        (d / "new.arrow").write_text("new")
    assert os.listdir(tmp_path) == ["selected"] and os.listdir(target) == ["new.arrow"]
