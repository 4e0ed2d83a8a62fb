"""vithybrid.atomic: output files are written whole, through a temporary file created exclusively beside them,
never through a path that already exists (a link planted by another user of a shared folder)."""

import os
import stat

import pytest

from vithybrid import atomic


def test_a_planted_link_at_the_temporary_name_is_never_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(names))
    (tmp_path / ".out.html.planted.tmp").symlink_to(victim)  # the first name it will try is taken
    atomic.write_text(tmp_path / "out.html", "<p>report</p>")
    assert victim.read_text() == "precious"
    out = tmp_path / "out.html"
    assert stat.S_ISREG(os.lstat(out).st_mode) and out.read_text() == "<p>report</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.html.planted.tmp", "out.html", "victim.txt"]


def test_a_link_at_the_target_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out.html").symlink_to(victim)
    atomic.write_text(tmp_path / "out.html", "new")
    assert victim.read_text() == "precious" and not (tmp_path / "out.html").is_symlink()


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    (tmp_path / "out.json").write_text("old")
    with pytest.raises(RuntimeError), atomic.replacing(tmp_path / "out.json", "w") as file:
        file.write("half")
        raise RuntimeError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"] and (tmp_path / "out.json").read_text() == "old"


def test_new_files_get_the_usual_permissions(tmp_path):
    """Not mkstemp's 0600: a report in a shared folder stays readable by those the umask lets read it."""
    umask = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "out.html", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.html").stat().st_mode) == 0o644


def test_check_writable_leaves_nothing(tmp_path):
    atomic.check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        atomic.check_writable(tmp_path / "missing")
