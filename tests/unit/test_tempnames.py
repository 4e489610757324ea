"""Which names stay local: editors', office suites', browsers' and rsync's temporaries."""

from __future__ import annotations

import pytest

from trackerfs.core.tempnames import is_lock_file, is_temporary


@pytest.mark.parametrize(
    "name",
    [
        ".~lock.report.odt#",
        "lu4711abc.tmp",
        "~$report.docx",
        "~WRL0001.tmp",
        ".notes.txt.swp",
        "4913",
        "notes.txt~",
        ".#notes.txt",
        "#notes.txt#",
        "film.mkv.part",
        "x.crdownload",
        ".goutputstream-ABC123",
        ".data.bin.urfenp",
        ".data.bin.Ab3xQ9",
        "t.db-journal",
        "t.db-wal",
        "t.db-shm",
        ".#draft",
        "#draft#",
    ],
)
def test_temporary_names(name: str) -> None:
    assert is_temporary(name)


@pytest.mark.parametrize("name", ["report.pdf", "notes.txt", ".bashrc", ".env", "a.tmpl", "4914", "lu.txt"])
def test_real_names(name: str) -> None:
    assert not is_temporary(name)


@pytest.mark.parametrize("name", ["t.db", "journal", "wal.txt", "shm"])
def test_names_near_sqlite_temporaries_are_real(name: str) -> None:
    assert not is_temporary(name)


def test_only_office_lock_files_are_lock_files() -> None:
    assert is_lock_file(".~lock.report.odt#") and is_lock_file("~$report.docx")
    assert not any(is_lock_file(name) for name in (".report.odt.swp", "#draft#", ".#draft", "x.tmp", "4913"))
