"""Which names stay local: editors', office suites', browsers' and rsync's temporaries."""

from __future__ import annotations

import pytest

from trackerfs.core.tempnames import is_ambiguous, is_temporary


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
    ],
)
def test_temporary_names(name: str) -> None:
    assert is_temporary(name)


@pytest.mark.parametrize("name", ["report.pdf", "notes.txt", ".bashrc", ".env", "a.tmpl", "4914", "lu.txt"])
def test_real_names(name: str) -> None:
    assert not is_temporary(name)


def test_rsync_like_names_are_ambiguous_and_others_are_not() -> None:
    assert is_ambiguous(".env.sample") and is_ambiguous(".data.bin.urfenp")
    assert not is_ambiguous(".~lock.report.odt#") and not is_ambiguous("x.tmp")
