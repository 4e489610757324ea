"""Names from untrusted servers: sanitising, shortening, disambiguation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from random import Random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trackerfs.core.names import (
    MAX_NAME_BYTES,
    assign_names,
    creation_order,
    dated_names,
    label_names,
    sanitize,
    truncate,
)
from trackerfs.model import Attachment

#: 2026-01-05 10:14:00 UTC
JAN_5 = datetime(2026, 1, 5, 10, 14, tzinfo=UTC).timestamp()


def attachment(ident: str, name: str, created: float) -> Attachment:
    return Attachment(id=ident, filename=name, size=1, created=created)


def ids(names: dict[str, Attachment]) -> dict[str, str]:
    return {name: item.id for name, item in names.items()}


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


def test_equal_labels_go_plain_to_the_earliest_and_tagged_with_their_id_to_the_rest() -> None:
    named = label_names(
        [
            ("Design", 30.0, "12", "later"),
            ("Design", 10.0, "40", "earliest"),
            ("Design", 30.0, "9", "tie, lower id"),
            ("a/b", 0.0, "7", "slash"),
            ("..", 0.0, "8", "dots"),
        ]
    )
    assert named == {
        "Design": "earliest",
        "Design (9)": "tie, lower id",
        "Design (12)": "later",
        "a_b": "slash",
        "__": "dots",
    }


def test_a_real_label_that_reads_like_a_tagged_one_keeps_it() -> None:
    named = label_names([("X", 1.0, "5", "first"), ("X", 2.0, "6", "second"), ("X (6)", 3.0, "7", "real")])
    assert named == {"X": "first", "X (6)": "real", "X (6 2)": "second"}


def test_tagged_labels_fit_and_keep_an_untrusted_id_safe() -> None:
    long = "x" * 251 + ".txt"
    named = label_names([(long, 1.0, "1", "a"), (long, 2.0, "a/\n" * 40, "b")])
    assert all(0 < len(name.encode()) <= MAX_NAME_BYTES and "/" not in name for name in named)
    assert sorted(named.values()) == ["a", "b"]


labels = st.lists(
    st.tuples(st.sampled_from(["Ops", "ops", "Ops (3)", "a/b", "", ".", "Q"]), st.integers(0, 3)),
    max_size=12,
)


@given(labels, st.sampled_from(["Ops", "Q", "new"]), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_labels_are_unique_deterministic_and_a_new_item_renames_no_other(
    batch: list[tuple[str, int]], label: str, random: Random
) -> None:
    items = [(text, float(when), str(n + 1), str(n + 1)) for n, (text, when) in enumerate(batch)]
    first = label_names(items)
    assert sorted(first.values()) == sorted(item[3] for item in items)
    assert label_names(random.sample(items, len(items))) == first
    assume(label not in first)  # a real label never takes a name another item holds
    later = label_names([*items, (label, 10.0, "99", "99")])
    assert {name: ident for name, ident in later.items() if ident != "99"} == first


def test_dated_names_fit_keep_the_extension_and_carry_the_id_when_shortened() -> None:
    long = "x" * 251 + ".txt"
    names = assign_names([attachment("1", long, JAN_5), attachment("2", long, JAN_5 + 60)])
    dated = next(name for name, item in names.items() if item.id == "1")
    assert len(dated.encode()) == MAX_NAME_BYTES
    assert dated.endswith(" (2026-01-05 10.14.00 id 1).txt") and dated.startswith("xxx")
    # two long names that differ only where both are cut stay apart by their ids
    other = "x" * 250 + ".txt"
    names = assign_names(
        [attachment(str(n), raw, JAN_5 + n) for n, raw in enumerate([long, long, other, other])]
    )
    assert sorted(ids(names).values()) == ["0", "1", "2", "3"]
    assert [name for name in names if " id " in name] == [
        "x" * 224 + " (2026-01-05 10.14.00 id 0).txt",
        "x" * 224 + " (2026-01-05 10.14.02 id 2).txt",
    ]


def test_newest_holds_the_plain_name_and_older_ones_are_dated() -> None:
    items = [
        attachment("12", "notes.txt", JAN_5 + 3600),
        attachment("10", "notes.txt", JAN_5),
        attachment("11", "notes (2).txt", JAN_5 + 60),
        attachment("13", "notes.txt", JAN_5 + 86400),
    ]
    assert ids(assign_names(items)) == {
        "notes.txt": "13",
        "notes (2026-01-05 10.14).txt": "10",
        "notes (2026-01-05 11.14).txt": "12",
        "notes (2).txt": "11",
    }


def test_versions_of_one_minute_get_seconds_then_their_id() -> None:
    items = [
        attachment("10", "a.txt", JAN_5 + 5),
        attachment("11", "a.txt", JAN_5 + 40),
        attachment("12", "a.txt", JAN_5 + 40.5),
        attachment("13", "a.txt", JAN_5 + 500),
    ]
    assert ids(assign_names(items)) == {
        "a.txt": "13",
        "a (2026-01-05 10.14).txt": "10",
        "a (2026-01-05 10.14.40).txt": "11",
        "a (2026-01-05 10.14.40 id 12).txt": "12",
    }


def test_ties_in_creation_time_are_broken_by_id() -> None:
    items = [
        attachment("9", "a.txt", JAN_5),
        attachment("10", "a.txt", JAN_5),
        attachment("x", "a.txt", JAN_5),
    ]
    assert ids(assign_names(items)) == {
        "a.txt": "10",
        "a (2026-01-05 10.14).txt": "x",
        "a (2026-01-05 10.14.00).txt": "9",
    }


def test_a_real_name_that_looks_generated_is_never_displaced() -> None:
    real = attachment("20", "notes (2026-01-05 10.14).txt", JAN_5 + 7200)
    items = [attachment("10", "notes.txt", JAN_5), attachment("11", "notes.txt", JAN_5 + 3600)]
    before = ids(assign_names(items))
    assert before["notes (2026-01-05 10.14).txt"] == "10"
    after = ids(assign_names([*items, real]))
    assert after == {
        "notes.txt": "11",
        "notes (2026-01-05 10.14).txt": "20",
        "notes (2026-01-05 10.14.00).txt": "10",
    }


def test_sanitised_collisions_are_disambiguated() -> None:
    items = [
        attachment("1", "a/b", JAN_5),
        attachment("2", "a_b", JAN_5 + 60),
        attachment("3", "a\nb", JAN_5 + 120),
    ]
    names = ids(assign_names(items))
    assert names == {"a_b": "3", "a_b (2026-01-05 10.14)": "1", "a_b (2026-01-05 10.15)": "2"}


def test_no_attachment_gets_a_local_name() -> None:
    items = [
        attachment("1", "a.txt", JAN_5),
        attachment("2", "a.txt", JAN_5 + 60),
        attachment("3", "b.txt", JAN_5),
    ]
    names = ids(assign_names(items, taken={"a.txt", "a (2026-01-05 10.14).txt"}))
    assert names == {
        "a (2026-01-05 10.14.00).txt": "1",
        "a (2026-01-05 10.15).txt": "2",
        "b.txt": "3",
    }


def test_repeated_or_huge_ids_still_get_unique_names() -> None:
    items = [attachment("7", "a.txt", JAN_5) for _ in range(3)] + [attachment("8" * 300, "a.txt", JAN_5)] * 2
    names = assign_names([*items, attachment("9", "a.txt", JAN_5 + 60)])
    assert len(names) == 6
    assert all(len(name.encode()) <= MAX_NAME_BYTES for name in names)


# Long UTF-8 names, and short names of any code points (lone surrogates, NUL, controls),
# mixed with a few plain names so that versions of one name are common.
names = (
    st.text(st.characters(codec="utf-8"), max_size=300)
    | st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)
    | st.sampled_from(
        ["notes.txt", "notes", "a/b", "a_b", "notes (2026-01-05 10.14).txt", "n" * 300, "n" * 254]
    )
)
#: seconds after JAN_5: versions share a minute often and a second sometimes
offsets = st.integers(min_value=0, max_value=200)
batches = st.lists(st.tuples(names, offsets), min_size=1, max_size=25)
locals_ = st.sets(names.map(sanitize), max_size=3)


def build(batch: list[tuple[str, int]]) -> list[Attachment]:
    return [attachment(str(10000 + n), name, JAN_5 + offset) for n, (name, offset) in enumerate(batch)]


def names_by_id(items: list[Attachment], taken: set[str]) -> dict[str, str]:
    return {item.id: name for name, item in assign_names(items, taken).items()}


@given(batches, locals_, st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_any_names_become_safe_unique_and_deterministic(
    batch: list[tuple[str, int]], taken: set[str], random: Random
) -> None:
    items = build(batch)
    first = assign_names(items, taken)
    assert len(first) == len(items)
    for name in first:
        raw = name.encode("utf-8")
        assert 0 < len(raw) <= MAX_NAME_BYTES
        assert "/" not in name and "\0" not in name and name not in (".", "..")
        assert name not in taken
    shuffled = random.sample(items, len(items))
    assert ids(assign_names(shuffled, taken)) == ids(first)
    assert ids(assign_names(items, taken)) == ids(first)


@given(batches, locals_, st.data())
@settings(max_examples=300, deadline=None)
def test_a_new_version_changes_only_the_name_of_the_one_it_supersedes(
    batch: list[tuple[str, int]], taken: set[str], data: st.DataObject
) -> None:
    items = build(batch)
    raw = data.draw(st.sampled_from(items)).filename
    group = sanitize(raw)
    superseded = max((item for item in items if sanitize(item.filename) == group), key=creation_order)
    upload = attachment("99999", raw, max(item.created for item in items) + 1)
    before = names_by_id(items, taken)
    after = names_by_id([*items, upload], taken)
    changed = {ident for ident, name in before.items() if after[ident] != name}
    if group in taken:
        assert changed == set()
    else:
        assert changed == {superseded.id}
        assert before[superseded.id] == group == after[upload.id]
        assert after[superseded.id] in itertools.islice(dated_names(group, superseded), 3)


@given(batches, locals_, st.data())
@settings(max_examples=300, deadline=None)
def test_deleting_an_old_version_changes_no_other_name(
    batch: list[tuple[str, int]], taken: set[str], data: st.DataObject
) -> None:
    items = build(batch)
    newest = {sanitize(item.filename): item for item in sorted(items, key=creation_order)}
    old = [item for item in items if newest[sanitize(item.filename)] is not item]
    assume(old)
    gone = data.draw(st.sampled_from(old))
    before = names_by_id(items, taken)
    after = names_by_id([item for item in items if item is not gone], taken)
    for ident, name in after.items():
        if name == before[ident]:
            continue
        # The one exception: a newer version of the same minute that had to go longer
        # because the deleted one held the shorter form now takes that shorter form.
        item = next(item for item in items if item.id == ident)
        assert sanitize(item.filename) == sanitize(gone.filename)
        assert int(item.created // 60) == int(gone.created // 60)
        assert creation_order(item) > creation_order(gone)
        forms = list(itertools.islice(dated_names(sanitize(item.filename), item), 3))
        assert forms.index(name) < forms.index(before[ident])


def test_deleting_the_older_of_two_versions_of_one_minute_shortens_the_other() -> None:
    items = [
        attachment("1", "a.txt", JAN_5 + 5),
        attachment("2", "a.txt", JAN_5 + 40),
        attachment("3", "a.txt", JAN_5 + 3600),
    ]
    assert ids(assign_names(items))["a (2026-01-05 10.14.40).txt"] == "2"
    assert ids(assign_names(items[1:]))["a (2026-01-05 10.14).txt"] == "2"


@given(names)
def test_sanitize_is_idempotent(name: str) -> None:
    once = sanitize(name)
    assert sanitize(once) == once
