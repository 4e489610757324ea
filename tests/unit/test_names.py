"""Names from untrusted servers: sanitising, shortening, disambiguation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackerfs.core.names import MAX_NAME_BYTES, assign_names, numbered, sanitize, truncate
from trackerfs.model import Attachment


def attachment(ident: str, name: str, created: float) -> Attachment:
    return Attachment(id=ident, filename=name, size=1, created=created)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("a/b", "a_b"),
        ("../x", ".._x"),
        (".", "_"),
        ("..", "__"),
        ("", "_"),
        ("nul\x00byte", "nul_byte"),
        ("line\nbreak", "line_break"),
        ("bad\udcffname", "bad\ufffdname"),
        ("del\x7f", "del_"),
        ("...", "..."),
        (".bashrc", ".bashrc"),
    ],
)
def test_sanitize(raw: str, safe: str) -> None:
    assert sanitize(raw) == safe
    safe.encode("utf-8")


def test_long_names_keep_their_extension_and_fit() -> None:
    name = sanitize("n" * 296 + ".txt")
    assert len(name.encode()) == MAX_NAME_BYTES and name.endswith(".txt")


def test_multibyte_names_are_cut_on_a_character_boundary() -> None:
    name = truncate("é" * 140 + ".txt")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.endswith(".txt") and set(name[:-4]) == {"é"}


def test_numbered_names_fit_too() -> None:
    long = "x" * 251 + ".txt"
    assert len(numbered(long, 12).encode()) <= MAX_NAME_BYTES
    assert numbered(long, 12).endswith(" (12).txt")
    assert numbered("notes", 2) == "notes (2)"
    assert numbered(".env", 3) == ".env (3)"


def test_oldest_keeps_the_name_and_real_numbered_names_are_not_displaced() -> None:
    items = [
        attachment("12", "notes.txt", 300.0),
        attachment("10", "notes.txt", 100.0),
        attachment("11", "notes (2).txt", 200.0),
        attachment("13", "notes.txt", 300.0),
    ]
    names = {name: item.id for name, item in assign_names(items).items()}
    assert names == {"notes.txt": "10", "notes (2).txt": "11", "notes (3).txt": "12", "notes (4).txt": "13"}


def test_assignment_is_stable_whatever_the_input_order() -> None:
    items = [attachment(str(i), "a.png" if i % 2 else "b.png", float(i % 3)) for i in range(10)]
    first = {n: i.id for n, i in assign_names(items).items()}
    second = {n: i.id for n, i in assign_names(reversed(items)).items()}
    assert first == second
    assert len(first) == 10


def test_sanitised_collisions_are_disambiguated() -> None:
    items = [attachment("1", "a/b", 1.0), attachment("2", "a_b", 2.0), attachment("3", "a\nb", 3.0)]
    names = assign_names(items)
    assert sorted(names) == ["a_b", "a_b (2)", "a_b (3)"]
    assert names["a_b"].id == "1"


def test_local_names_are_avoided_by_numbered_names() -> None:
    items = [attachment("1", "a.txt", 1.0), attachment("2", "a.txt", 2.0)]
    assert sorted(assign_names(items, taken={"a (2).txt"})) == ["a (3).txt", "a.txt"]


# Long UTF-8 names, and short names of any code points (lone surrogates, NUL, controls).
names = st.text(st.characters(codec="utf-8"), max_size=300) | st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40
)
batches = st.lists(st.tuples(names, st.integers(min_value=0, max_value=5)), min_size=1, max_size=25)


@given(batches)
@settings(max_examples=300, deadline=None)
def test_any_names_become_safe_unique_and_stable(batch: list[tuple[str, int]]) -> None:
    items = [attachment(str(10000 + n), name, float(day)) for n, (name, day) in enumerate(batch)]
    first = assign_names(items)
    assert len(first) == len(items)
    for name in first:
        raw = name.encode("utf-8")
        assert 0 < len(raw) <= MAX_NAME_BYTES
        assert "/" not in name and "\0" not in name and name not in (".", "..")
    assert {n: i.id for n, i in assign_names(list(reversed(items))).items()} == {
        n: i.id for n, i in first.items()
    }


@given(names)
def test_sanitize_is_idempotent(name: str) -> None:
    once = sanitize(name)
    assert sanitize(once) == once
