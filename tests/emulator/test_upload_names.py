"""The name a Waldur-like storage keeps an upload under (the `rename_uploads` rule)."""

from __future__ import annotations

import re

from trackerfs.emulator.dialects.base import STORED_NAME_MAX, stored_file_name


def test_spaces_become_underscores_and_odd_characters_go() -> None:
    assert stored_file_name("my report.pdf", ()) == "my_report.pdf"
    assert stored_file_name(" a&b (1).txt ", ()) == "ab_1.txt"
    assert stored_file_name("?!", ()) == "file"


def test_a_taken_name_gets_seven_random_letters_before_its_extension() -> None:
    renamed = stored_file_name("my report.pdf", {"my_report.pdf"})
    assert re.fullmatch(r"my_report_[A-Za-z0-9]{7}\.pdf", renamed)
    assert re.fullmatch(r"noext_[A-Za-z0-9]{7}", stored_file_name("noext", {"noext"}))


def test_a_long_name_is_cut_to_100_characters_keeping_its_extension() -> None:
    long = stored_file_name("x" * 300 + ".tar.gz", ())
    assert len(long) == STORED_NAME_MAX and long.endswith("x.gz")
    taken = stored_file_name("x" * 300 + ".gz", {long})
    assert len(taken) == STORED_NAME_MAX and taken != long and taken.endswith(".gz")
